"""The rule packs' limits: each pack's regulatory bound, and a policy's narrowing of it.

A `Limits` holds every number a rule reads. `BOUNDS[pack]` is what the pack's sources allow at the
most (the widest a policy may go); `narrow(pack, overrides)` returns the limits a policy asks for, or
refuses with a `ValueError` that names the field and says why. A policy may only ever make contact
rarer, later, or slower: a later window start, an earlier window end, a lower cap, a longer wait or
hold. A limit the pack has no rule for (say `hardship_hold_days` in the US pack) is refused too,
because nothing would enforce it and the operator would believe otherwise.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import time
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError, model_validator

from ..base import Model


class PackCode(StrEnum):
    """A rule pack: the jurisdiction whose contact rules apply (the contract's `rule_pack`)."""

    CN = "CN"
    US = "US"
    UK = "UK"


class Limits(Model):
    """Every number the rules read. `None` means the rule does not apply (no such cap or wait)."""

    window_start: time
    """Local time (borrower's zone) from which contact may happen."""
    window_end: time
    """Local time from which no contact happens until the next day's window (exclusive end)."""
    max_contacts_per_day: int | None = Field(default=None, ge=1)
    """Contacts per borrower per local day, every loan, channel and actor together."""
    max_calls_per_7_days: int | None = Field(default=None, ge=1)
    """Telephone calls (channel call or voice, any actor) per loan in any 7 consecutive local days."""
    call_cooloff_days: int | None = Field(default=None, ge=1)
    """No call about a loan for this many days, counting the day of a telephone conversation about it."""
    escalation_warning_days: int = Field(default=7, ge=1)
    """Days between the agency_warning / legal_warning notice and the placement or referral."""
    credit_report_warning_days: int | None = Field(default=None, ge=1)
    """Days between the credit_report_warning notice and the first negative bureau report."""
    bureau_wait_days: int | None = Field(default=None, ge=1)
    """Days after the first message about the debt before the first bureau report."""
    validation_period_days: int | None = Field(default=None, ge=1)
    """The dispute period the validation notice gives, counted from its assumed receipt."""
    hardship_hold_days: int | None = Field(default=None, ge=1)
    """No escalation for this many days after the borrower reports hardship."""
    breathing_space_days: int = Field(default=60, ge=1)
    """Length of a breathing space whose signal names no `days`."""

    @model_validator(mode="after")
    def _window(self) -> Limits:
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start")
        return self

    @property
    def retention_days(self) -> int:
        """How many days of contact history the rules can need: the 7 local days of the call rules
        (plus one for the widest zone offset), or the call cool-off if a policy made it longer."""
        return max(8, (self.call_cooloff_days or 0) + 1)


_CONTRACT_WARNING = "the contract requires the agency/legal warning at least 7 days ahead"
_BREATHING = "a breathing space lasts 60 days unless its signal says otherwise"

BOUNDS: dict[PackCode, Limits] = {
    PackCode.CN: Limits(window_start=time(8), window_end=time(22), max_contacts_per_day=3,
                        escalation_warning_days=7, credit_report_warning_days=7, breathing_space_days=60),
    PackCode.US: Limits(window_start=time(8), window_end=time(21), max_calls_per_7_days=7, call_cooloff_days=7,
                        escalation_warning_days=7, bureau_wait_days=14, validation_period_days=30,
                        breathing_space_days=60),
    PackCode.UK: Limits(window_start=time(8), window_end=time(21), escalation_warning_days=7,
                        hardship_hold_days=30, breathing_space_days=60),
}
"""Each pack's regulatory bound: the widest limits its sources allow (docs/compliance.md cites them)."""


@dataclass(frozen=True)
class _Direction:
    """How a field narrows: `le` (a smaller value is narrower) or `ge` (a larger one is)."""

    way: Literal["le", "ge"]
    rule: str
    """What the limit drives: a rule's name (without the pack's code), or a phrase."""
    source: dict[PackCode, str]
    """Why the bound is what it is, per pack, for the error message."""


_WINDOW_START = {PackCode.CN: "the earliest the 2024 NIFA collection guidelines allow is 08:00",
                 PackCode.US: "the earliest Regulation F (12 CFR 1006.6(b)(1)(i)) allows is 08:00",
                 PackCode.UK: "the earliest the UK pack allows (CONC 7.9.4R, contract) is 08:00"}
_WINDOW_END = {PackCode.CN: "the latest the 2024 NIFA collection guidelines allow is 22:00",
               PackCode.US: "the latest Regulation F (12 CFR 1006.6(b)(1)(i)) allows is 21:00",
               PackCode.UK: "the latest the UK pack allows (CONC 7.9.4R, contract) is 21:00"}

_FIELDS: dict[str, _Direction] = {
    "window_start": _Direction("ge", "window", _WINDOW_START),
    "window_end": _Direction("le", "window", _WINDOW_END),
    "max_contacts_per_day": _Direction(
        "le", "daily_limit", {PackCode.CN: "the CN pack allows at most 3 contacts a day"}),
    "max_calls_per_7_days": _Direction(
        "le", "seven_in_seven", {PackCode.US: "Regulation F (12 CFR 1006.14(b)(2)(i)(A)) allows at most 7 calls in "
                                              "7 days"}),
    "call_cooloff_days": _Direction(
        "ge", "after_conversation", {PackCode.US: "Regulation F (12 CFR 1006.14(b)(2)(i)(B)) needs at least 7 days "
                                                  "after a conversation"}),
    "escalation_warning_days": _Direction(
        "ge", "agency_warning/legal_warning", {p: _CONTRACT_WARNING for p in PackCode}),
    "credit_report_warning_days": _Direction(
        "ge", "credit_report_warning", {PackCode.CN: "the CN pack warns at least 7 days before the first negative "
                                                     "report"}),
    "bureau_wait_days": _Direction(
        "ge", "passive_reporting", {PackCode.US: "Regulation F (12 CFR 1006.30(a), comment 30(a)(1)-2) waits at "
                                                 "least 14 days"}),
    "validation_period_days": _Direction(
        "ge", "validation period", {PackCode.US: "Regulation F (12 CFR 1006.34(b)(5)) gives at least 30 days"}),
    "hardship_hold_days": _Direction(
        "ge", "hardship", {PackCode.UK: "the UK pack holds escalation at least 30 days after hardship"}),
    "breathing_space_days": _Direction("ge", "breathing_space", {p: _BREATHING for p in PackCode}),
}
LIMIT_FIELDS: tuple[str, ...] = tuple(_FIELDS)
"""Every field a policy may narrow."""

_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    f: TypeAdapter(time) if f.startswith("window") else TypeAdapter(Annotated[int, Field(ge=1)])
    for f in _FIELDS
}


def _coerce(field: str, label: str, value: Any) -> Any:
    """`value` as the field's type: a wall-clock time (no offset: it is the borrower's local time) or a
    whole number of at least 1."""
    if field.startswith("window"):
        if not isinstance(value, time | str) or isinstance(value, bool):
            raise ValueError(f"{label} must be a local time like 09:00, not {value!r}")
    elif not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{label} must be a whole number, not {value!r}")
    try:
        value = _ADAPTERS[field].validate_python(value)
    except ValidationError as e:
        raise ValueError(f"{label} {value!r}: {e.errors()[0]['msg']}") from None
    if isinstance(value, time) and value.tzinfo is not None:
        raise ValueError(f"{label} {value.isoformat()} must be a local time without an offset (the borrower's zone)")
    return value


def _show(value: Any) -> str:
    return value.isoformat("minutes") if isinstance(value, time) else str(value)


def _drives(field: str, code: PackCode, article: str = "the") -> str:
    """What `field` drives in pack `code`: `US.seven_in_seven`, or `the US validation period`."""
    rule = _FIELDS[field].rule
    return f"{article} {code} {rule}".lstrip() if " " in rule else f"{code}.{rule}"


def pack_code(pack: PackCode | str) -> PackCode:
    """The pack for a code, or a ValueError that names the choices."""
    try:
        return PackCode(pack)
    except ValueError:
        raise ValueError(f"contact.rule_pack must be one of CN, US, UK, not {pack!r}") from None


def narrow(pack: PackCode | str, overrides: Mapping[str, Any] | None = None, *,
           labels: Mapping[str, str] | None = None) -> Limits:
    """The pack's limits narrowed by `overrides` (field -> value; None keeps the pack's value).

    Raises ValueError naming the field (as `labels` names it, by default `contact.<field>`) when a
    value would widen the pack, when the pack has no rule for that limit, or when the field is unknown.
    """
    code = pack_code(pack)
    bound = BOUNDS[code]
    names = dict(labels or {})
    chosen: dict[str, Any] = {}
    for field, value in (overrides or {}).items():
        label = names.get(field, f"contact.{field}")
        if field not in _FIELDS:
            raise ValueError(f"{label} is not a contact limit (known: {', '.join(LIMIT_FIELDS)})")
        if value is None:
            continue
        value = _coerce(field, label, value)
        limit = getattr(bound, field)
        if limit is None:
            if _FIELDS[field].way == "le":
                chosen[field] = value  # a cap where the pack has none only narrows
                continue
            what = _drives(field, code, article="")
            raise ValueError(f"{label} {_show(value)} has no meaning in the {code} pack, which has no {what}"
                             f"{'' if ' ' in what else ' rule'}")
        direction = _FIELDS[field]
        wider = value > limit if direction.way == "le" else value < limit
        if wider:
            raise ValueError(f"{label} {_show(value)} would widen {_drives(field, code)}: "
                             f"{direction.source[code]}")
        chosen[field] = value
    start = chosen.get("window_start", bound.window_start)
    end = chosen.get("window_end", bound.window_end)
    if end <= start:
        raise ValueError(f"{names.get('window_end', 'contact.window_end')} {_show(end)} must be after "
                         f"{names.get('window_start', 'contact.window_start')} {_show(start)}")
    return Limits.model_validate({**bound.model_dump(), **chosen})
