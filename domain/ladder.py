"""Days past due and the stage ladder."""

from __future__ import annotations

from datetime import date

from .models import Stage
from .policy import Policy, StageRule


def days_past_due(due_date: date, today: date) -> int:
    """DPD = today (borrower's zone) minus the first missed due date; never negative."""
    return max(0, (today - due_date).days)


def stage_for_dpd(policy: Policy, dpd: int) -> Stage:
    """The highest stage whose entry DPD has been reached; the first stage before any is reached."""
    stage = policy.ladder[0].stage
    for rule in policy.ladder:
        if dpd >= rule.enter_at_dpd:
            stage = rule.stage
    return stage


def next_stage_rule(policy: Policy, stage: Stage) -> StageRule | None:
    """The rule of the stage after `stage` in the ladder, if any."""
    ranks = [r for r in policy.ladder if r.stage.rank > stage.rank]
    return ranks[0] if ranks else None


def escalate(policy: Policy, current: Stage | None, dpd: int) -> Stage:
    """Stages never skip backwards while the loan is unpaid."""
    target = stage_for_dpd(policy, dpd)
    if current is not None and current.rank > target.rank:
        return current
    return target
