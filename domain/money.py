"""Money: Decimal amounts with two places, never floats.

`Money` is the pydantic type every amount in a payload uses. On input it takes a decimal string
("1234.50", "100", "0.5") or a Decimal; floats and other numbers are refused so that no binary
rounding can slip in. On JSON output it is always a string with exactly two places.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, WithJsonSchema

CENT = Decimal("0.01")
ZERO = Decimal("0.00")

_MONEY_RE = re.compile(r"^-?[0-9]{1,15}(\.[0-9]{1,2})?$")

# The JSON schemas say exactly what the parsers accept (after the parser's strip of surrounding
# spaces, which the request models refuse): ASCII digits only ([0-9], not \d, which a Python-based
# validator would widen to every Unicode digit), and no look-arounds, so that any client's regex
# engine (ECMA 262, RE2, Rust) compiles them.
MONEY_PATTERN = r"^-?[0-9]{1,15}(\.[0-9]{1,2})?$"
UNSIGNED_MONEY_PATTERN = r"^[0-9]{1,15}(\.[0-9]{1,2})?$"
ZERO_MONEY_PATTERN = r"^-?0{1,15}(\.0{1,2})?$"
"""Zero written any way the parser takes it ("0", "00.0", "-0.00"): what a positive amount is not."""
NON_NEGATIVE_MONEY_PATTERN = r"^(-0{1,15}(\.0{1,2})?|[0-9]{1,15}(\.[0-9]{1,2})?)$"
"""Zero or more; the parser takes a signed zero ("-0.00") as zero, so the schema says so too."""
_RATE_RE = re.compile(r"^[0-9]{1,3}(\.[0-9]{1,10})?$")


def q(amount: Decimal) -> Decimal:
    """Round to the cent, half up (the contract's rounding for every accrued amount)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def fmt(amount: Decimal) -> str:
    """The contract's money string: two places, no exponent."""
    return f"{q(amount):.2f}"


def _parse_money(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("money must be a finite decimal")
        if value.as_tuple().exponent < -2 and value != q(value):  # type: ignore[operator]
            raise ValueError("money has at most two decimal places")
        return q(value)
    if isinstance(value, str):
        text = value.strip()
        if not _MONEY_RE.match(text):
            raise ValueError(
                'money must be a decimal string with at most two places, such as "1234.50"'
            )
        return q(Decimal(text))
    if isinstance(value, (float, int)) and not isinstance(value, bool):
        raise ValueError('money must be a decimal string such as "1234.50", not a JSON number')
    raise ValueError('money must be a decimal string such as "1234.50"')


def _parse_rate(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        if not value.is_finite() or value < 0:
            raise ValueError("rate must be a non-negative decimal")
        return value
    if isinstance(value, str) and _RATE_RE.match(value.strip()):
        try:
            return Decimal(value.strip())
        except InvalidOperation as exc:  # pragma: no cover - the regex guards this
            raise ValueError("rate must be a decimal string such as \"0.1825\"") from exc
    raise ValueError('rate must be a decimal string such as "0.1825", not a JSON number')


Money = Annotated[
    Decimal,
    BeforeValidator(_parse_money),
    PlainSerializer(fmt, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": MONEY_PATTERN, "examples": ["1234.50"]}),
]
"""An amount of money: decimal string in, two-place decimal string out."""

Rate = Annotated[
    Decimal,
    BeforeValidator(_parse_rate),
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^[0-9]{1,3}(\.[0-9]{1,10})?$", "examples": ["0.1825"]}),
]
"""A rate (annual interest, a share): decimal string in and out."""


def _positive(value: Decimal) -> Decimal:
    if value <= 0:
        raise ValueError("must be greater than 0.00")
    return value


def _non_negative(value: Decimal) -> Decimal:
    if value < 0:
        raise ValueError("must not be negative")
    return value


PositiveMoney = Annotated[
    Money,
    AfterValidator(_positive),
    WithJsonSchema({"type": "string", "pattern": UNSIGNED_MONEY_PATTERN, "not": {"pattern": ZERO_MONEY_PATTERN},
                    "examples": ["1234.50"]}),
]
"""An amount that must be more than zero (a principal, a payment)."""

NonNegativeMoney = Annotated[
    Money,
    AfterValidator(_non_negative),
    WithJsonSchema({"type": "string", "pattern": NON_NEGATIVE_MONEY_PATTERN, "examples": ["0.00", "1234.50"]}),
]
"""An amount that may be zero but not negative (arrears at intake, a down payment)."""
