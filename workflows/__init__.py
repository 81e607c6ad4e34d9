"""The durable shell: workflows orchestrate, the domain decides, activities touch the world."""

from .borrower import BorrowerWorkflow
from .collection import CollectionWorkflow
from .restructuring import RestructuringWorkflow

WORKFLOWS = [CollectionWorkflow, RestructuringWorkflow, BorrowerWorkflow]

__all__ = ["WORKFLOWS", "BorrowerWorkflow", "CollectionWorkflow", "RestructuringWorkflow"]
