"""Who works a task: the team by the borrower's region, then an agent by load or in turn."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .models import Borrower
from .policy import Team


def team_for(borrower: Borrower, teams: Sequence[Team]) -> Team:
    """The first team one of whose regions prefixes the borrower's time zone or address; else the
    first catch-all team (no regions); else the first team."""
    for team in teams:
        for region in team.regions:
            if borrower.timezone.startswith(region) or (borrower.address or "").startswith(region):
                return team
    for team in teams:
        if not team.regions:
            return team
    return teams[0]


def choose_agent(candidates: Sequence[str], loads: Mapping[str, int], strategy: str, turn: int,
                 exclude: Sequence[str] = ()) -> str:
    """`least_loaded`: the candidate with the fewest open tasks (ties: the order of the team);
    `round_robin`: candidate number `turn` modulo the team's size. `exclude` (the agent a task is
    taken from) is passed over unless nobody else is there."""
    pool = [a for a in candidates if a not in exclude] or list(candidates)
    if not pool:
        raise ValueError("candidates: a team needs at least one agent")
    if strategy == "round_robin":
        return pool[turn % len(pool)]
    return min(pool, key=lambda a: (loads.get(a, 0), pool.index(a)))
