"""Money: parsing, JSON output, the payment waterfall and daily accrual (pure domain)."""

from __future__ import annotations

import json
import re
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from domain.ledger import WATERFALL, Components, accrue, add_fee, allocate, daily_accrual
from domain.models import Balance, Loan, PaymentReceived
from domain.money import ZERO, Money, fmt, q

MONEY = TypeAdapter(Money)
FAST = settings(max_examples=200, deadline=None)

cents = st.integers(min_value=0, max_value=10**13)
amounts = cents.map(lambda c: Decimal(c).scaleb(-2))
small_amounts = st.integers(min_value=0, max_value=10**9).map(lambda c: Decimal(c).scaleb(-2))
components = st.builds(Components, principal=small_amounts, interest=small_amounts, penalty=small_amounts,
                       fees=small_amounts)
TWO_PLACES = re.compile(r'^"-?\d+\.\d{2}"$')


def _error(value: object) -> str:
    with pytest.raises(ValidationError) as info:
        MONEY.validate_python(value)
    return str(info.value)


# ----------------------------------------------------------------------------- parsing


@FAST
@given(c=st.integers(min_value=-(10**15) + 1, max_value=10**15 - 1), places=st.sampled_from([0, 1, 2]))
def test_decimal_strings_with_up_to_two_places_parse_exactly(c: int, places: int) -> None:
    value = Decimal(c).scaleb(-places)
    text = f"{value:.{places}f}"
    parsed = MONEY.validate_python(text)
    assert parsed == value
    assert parsed.as_tuple().exponent == -2  # always held with two places
    assert MONEY.validate_python(f"  {text} ") == value


@pytest.mark.parametrize(("text", "expected"), [
    ("1234.50", "1234.50"), ("100", "100.00"), ("0.5", "0.50"), ("0", "0.00"), ("-3.1", "-3.10"),
    ("000012.30", "12.30"), ("999999999999999.99", "999999999999999.99"),
])
def test_examples_parse(text: str, expected: str) -> None:
    assert fmt(MONEY.validate_python(text)) == expected


@FAST
@given(x=st.floats(allow_nan=True, allow_infinity=True))
def test_floats_are_refused_with_a_clear_message(x: float) -> None:
    msg = _error(x)
    assert "decimal string" in msg and "not a JSON number" in msg


@FAST
@given(n=st.integers())
def test_ints_are_refused(n: int) -> None:
    assert "not a JSON number" in _error(n)


def test_json_numbers_are_refused_in_payloads() -> None:
    with pytest.raises(ValidationError) as info:
        PaymentReceived.model_validate_json('{"payment_id": "P-1", "amount": 100.5}')
    assert "amount" in str(info.value) and "not a JSON number" in str(info.value)
    with pytest.raises(ValidationError):
        PaymentReceived.model_validate_json('{"payment_id": "P-1", "amount": 100}')
    with pytest.raises(ValidationError):
        MONEY.validate_python(True)


@FAST
@given(c=st.integers(min_value=0, max_value=10**12), extra=st.integers(min_value=3, max_value=8))
def test_more_than_two_places_refused(c: int, extra: int) -> None:
    text = f"{Decimal(c).scaleb(-extra):.{extra}f}"
    assert "at most two places" in _error(text)


@FAST
@given(c=st.integers(min_value=-(10**12), max_value=10**12))
def test_decimals_with_three_places_refused_unless_exact(c: int) -> None:
    d = Decimal(c).scaleb(-3)
    if c % 10 == 0:
        assert MONEY.validate_python(d) == d  # "1.230" is the amount 1.23
    else:
        assert "at most two decimal places" in _error(d)


@pytest.mark.parametrize("garbage", [
    "", " ", "abc", "1,000.00", "1 000.00", "1e3", "1E+2", "NaN", "Infinity", "-Infinity", "1.", ".5",
    "+1.00", "--1", "1.2.3", "0x10", "12.3a", "¥12.30", "12.30 CNY", "1234567890123456.00", "1_000",
    None, [], {}, b"1.00", object(),
])
def test_garbage_refused_with_a_clear_message(garbage: object) -> None:
    assert "money must be a decimal string" in _error(garbage)


@pytest.mark.parametrize("special", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"), Decimal("sNaN")])
def test_non_finite_decimals_refused(special: Decimal) -> None:
    assert "finite" in _error(special)


@FAST
@given(text=st.one_of(st.text(alphabet=st.characters(max_codepoint=127), max_size=25),
                     st.from_regex(r"\A\s*-?[0-9]{0,17}(\.[0-9]{0,4})?\s*\Z")))
def test_any_accepted_string_is_an_ascii_decimal_with_two_places_at_most(text: str) -> None:
    try:
        value = MONEY.validate_python(text)
    except ValidationError as exc:
        assert "money must be a decimal string" in str(exc)
        return
    assert re.fullmatch(r"-?[0-9]{1,15}(\.[0-9]{1,2})?", text.strip())
    assert value == Decimal(text.strip())


@pytest.mark.parametrize("text", ["１２３.４５", "١٢٣"])
def test_non_ascii_digits_refused(text: str) -> None:
    _error(text)


def test_loan_amounts_name_the_field() -> None:
    loan = {"loan_id": "L-1", "currency": "CNY", "principal": "5000.001", "annual_interest_rate": "0.1825",
            "due_date": "2026-10-20", "borrower": {"borrower_id": "B", "name": "N"}}
    with pytest.raises(ValidationError) as info:
        Loan.model_validate(loan)
    assert "principal" in str(info.value) and "two places" in str(info.value)
    with pytest.raises(ValidationError) as info:
        Loan.model_validate({**loan, "principal": 5000.0})
    assert "principal" in str(info.value)
    with pytest.raises(ValidationError) as info:
        Loan.model_validate({**loan, "principal": "5000.00", "annual_interest_rate": 0.1825})
    assert "annual_interest_rate" in str(info.value)


# ----------------------------------------------------------------------------- output


@FAST
@given(value=st.one_of(amounts, amounts.map(lambda d: -d),
                       st.integers(min_value=0, max_value=10**6).map(Decimal),
                       st.integers(min_value=0, max_value=10**6).map(lambda c: Decimal(c).scaleb(-1))))
def test_json_output_always_two_places(value: Decimal) -> None:
    out = MONEY.dump_json(MONEY.validate_python(value)).decode()
    assert TWO_PLACES.match(out), out
    assert Decimal(json.loads(out)) == value
    assert fmt(value) == json.loads(out)


def test_fmt_examples() -> None:
    assert fmt(Decimal("5")) == "5.00"
    assert fmt(Decimal("1E+3")) == "1000.00"
    assert fmt(Decimal("0.005")) == "0.01"  # half up
    assert fmt(Decimal("-0.005")) == "-0.01"
    assert fmt(Decimal("123456789012.3")) == "123456789012.30"
    assert Balance.of(Decimal("1"), ZERO, ZERO, ZERO).model_dump(mode="json") == {
        "principal": "1.00", "interest": "0.00", "penalty": "0.00", "fees": "0.00", "total": "1.00"}


# ----------------------------------------------------------------------------- the waterfall


@FAST
@given(c=components, amount=amounts)
def test_allocate_never_loses_or_invents_a_cent(c: Components, amount: Decimal) -> None:
    new, alloc = allocate(c, amount)
    assert alloc.applied + alloc.overpayment == amount
    for part in WATERFALL:
        assert getattr(new, part) + getattr(alloc, part) == getattr(c, part)
        assert getattr(new, part) >= 0 and getattr(alloc, part) >= 0
    assert new.total + alloc.applied == c.total
    assert alloc.overpayment == max(ZERO, amount - c.total)
    assert alloc.applied == min(amount, c.total)


@FAST
@given(c=components, amount=amounts)
def test_allocate_order_fees_penalty_interest_principal(c: Components, amount: Decimal) -> None:
    new, alloc = allocate(c, amount)
    for i, part in enumerate(WATERFALL):
        if getattr(alloc, part) > 0:
            # A later bucket is touched only when every earlier one is paid off.
            for earlier in WATERFALL[:i]:
                assert getattr(new, earlier) == 0, (part, earlier)
        if getattr(new, part) > 0:
            # Something left in this bucket: nothing went to later buckets, nothing was overpaid.
            for later in WATERFALL[i + 1:]:
                assert getattr(alloc, later) == 0
            assert alloc.overpayment == 0


@FAST
@given(c=components, payments=st.lists(small_amounts, max_size=6))
def test_payments_in_parts_equal_one_payment(c: Components, payments: list[Decimal]) -> None:
    state, over = c, ZERO
    for p in payments:
        state, alloc = allocate(state, p)
        over += alloc.overpayment
    whole, alloc = allocate(c, sum(payments, ZERO))
    assert state == whole
    assert over == alloc.overpayment


def test_allocate_example() -> None:
    c = Components(principal=Decimal("5000.00"), interest=Decimal("30.00"), penalty=Decimal("15.00"),
                   fees=Decimal("50.00"))
    new, alloc = allocate(c, Decimal("80.00"))
    assert (alloc.fees, alloc.penalty, alloc.interest, alloc.principal) == (
        Decimal("50.00"), Decimal("15.00"), Decimal("15.00"), ZERO)
    assert new == Components(principal=Decimal("5000.00"), interest=Decimal("15.00"))
    new, alloc = allocate(new, Decimal("6000.00"))
    assert new.total == 0 and alloc.overpayment == Decimal("985.00")
    with pytest.raises(ValueError):
        allocate(c, Decimal("-0.01"))


@FAST
@given(c=components)
def test_balance_total_is_the_sum_of_its_parts(c: Components) -> None:
    b = c.balance()
    assert b.total == b.principal + b.interest + b.penalty + b.fees == c.total
    c2 = add_fee(c, Decimal("12.34"))
    assert c2.fees == c.fees + Decimal("12.34") and c2.balance().total == c.total + Decimal("12.34")


# ----------------------------------------------------------------------------- accrual


def test_contract_accrual_example() -> None:
    one = daily_accrual(Decimal("10000.00"), Decimal("0.1825"), Decimal("0.5"), 365)
    assert (one.interest, one.penalty) == (Decimal("5.00"), Decimal("2.50"))
    c = Components(principal=Decimal("10000.00"))
    after, added = accrue(c, 30, Decimal("0.1825"), Decimal("0.5"), 365)
    assert (added.interest, added.penalty) == (Decimal("150.00"), Decimal("75.00"))
    assert after.total == Decimal("10225.00") and after.principal == Decimal("10000.00")
    after, added = accrue(c, 3, Decimal("0.1825"), Decimal("0.5"), 365, with_penalty=False)
    assert (after.interest, after.penalty) == (Decimal("15.00"), ZERO)


def test_daily_amounts_round_half_up_per_day() -> None:
    # 10.00 at 18.25%: 0.005 interest a day (half up: 0.01; banker's rounding would give 0.00),
    # 0.0025 penalty (0.00). Over 3 days: 0.03, not round(0.015) = 0.02.
    one = daily_accrual(Decimal("10.00"), Decimal("0.1825"), Decimal("0.5"), 365)
    assert (one.interest, one.penalty) == (Decimal("0.01"), ZERO)
    after, added = accrue(Components(principal=Decimal("10.00")), 3, Decimal("0.1825"), Decimal("0.5"), 365)
    assert added.interest == Decimal("0.03") and after.interest == Decimal("0.03")
    # 30.00: penalty 0.0075 -> 0.01 (half up).
    assert daily_accrual(Decimal("30.00"), Decimal("0.1825"), Decimal("0.5"), 365).penalty == Decimal("0.01")


rates = st.integers(min_value=0, max_value=10**6).map(lambda n: Decimal(n).scaleb(-6))


@FAST
@given(principal=amounts, rate=rates, day_count=st.sampled_from([360, 365, 366]),
       days=st.integers(min_value=0, max_value=400))
def test_accrual_is_the_day_amount_rounded_half_up_times_days(principal: Decimal, rate: Decimal, day_count: int,
                                                              days: int) -> None:
    assume(principal > 0)
    one = daily_accrual(principal, rate, Decimal("0.5"), day_count)
    exact_i = principal * rate / day_count
    exact_p = principal * rate * Decimal("0.5") / day_count
    assert one.interest == exact_i.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert one.penalty == exact_p.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert abs(one.interest - exact_i) <= Decimal("0.005") and abs(one.penalty - exact_p) <= Decimal("0.005")
    c = Components(principal=principal, fees=Decimal("1.00"))
    after, added = accrue(c, days, rate, Decimal("0.5"), day_count)
    assert added.interest == one.interest * days and added.penalty == one.penalty * days
    assert after.principal == principal and after.fees == c.fees
    assert after.total == c.total + added.interest + added.penalty
    # Day by day gives the same as all at once.
    step = c
    for _ in range(min(days, 5)):
        step, _ = accrue(step, 1, rate, Decimal("0.5"), day_count)
    assert step.interest == one.interest * min(days, 5)
    assert q(after.interest) == after.interest
