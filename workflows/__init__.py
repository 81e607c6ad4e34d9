"""The durable shell: workflows orchestrate, the domain decides, activities touch the world."""

from .collection import CollectionWorkflow
from .restructuring import RestructuringWorkflow

WORKFLOWS = [CollectionWorkflow, RestructuringWorkflow]

__all__ = ["WORKFLOWS", "CollectionWorkflow", "RestructuringWorkflow"]
