"""The two things every domain module shares: the strict base model and the stage ladder's names.

Kept apart from models.py so that policy (which names stages) and models (whose workflow input
names the policy) import each other's pieces without a cycle.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    """Base of every payload: unknown fields are an error."""

    model_config = ConfigDict(extra="forbid")


class Stage(StrEnum):
    NOTICE = "notice"
    CALL = "call"
    VISIT = "visit"
    AGENCY = "agency"
    LEGAL = "legal"

    @property
    def rank(self) -> int:
        return _STAGE_ORDER.index(self)


_STAGE_ORDER = [Stage.NOTICE, Stage.CALL, Stage.VISIT, Stage.AGENCY, Stage.LEGAL]
