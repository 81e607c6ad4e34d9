"""Days past due, the stage ladder, and the loan's clock (pure domain, no Temporal)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.clock import LoanClock, start_clock
from domain.ladder import days_past_due, escalate, next_stage_rule, stage_for_dpd
from domain.models import Stage
from domain.policy import Channel, Policy, StageRule

POLICY = Policy()
FAST = settings(max_examples=150, deadline=None)

dates = st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31))
stages = st.sampled_from(list(Stage))
dpds = st.integers(min_value=0, max_value=2000)


# ----------------------------------------------------------------------------- days past due


@FAST
@given(due=dates, offset=st.integers(min_value=-400, max_value=4000))
def test_days_past_due_is_days_since_due_and_never_negative(due: date, offset: int) -> None:
    today = due + timedelta(days=offset)
    assert days_past_due(due, today) == max(0, offset)


def test_days_past_due_examples() -> None:
    assert days_past_due(date(2026, 10, 20), date(2026, 10, 20)) == 0
    assert days_past_due(date(2026, 10, 20), date(2026, 10, 21)) == 1
    assert days_past_due(date(2026, 10, 20), date(2026, 11, 29)) == 40
    assert days_past_due(date(2026, 10, 20), date(2026, 10, 1)) == 0
    # Across a leap day.
    assert days_past_due(date(2028, 2, 28), date(2028, 3, 1)) == 2


# ----------------------------------------------------------------------------- the ladder


@pytest.mark.parametrize(
    ("dpd", "stage"),
    [
        (1, Stage.NOTICE), (7, Stage.NOTICE),
        (8, Stage.CALL), (30, Stage.CALL),
        (31, Stage.VISIT), (40, Stage.VISIT), (60, Stage.VISIT),
        (61, Stage.AGENCY), (90, Stage.AGENCY),
        (91, Stage.LEGAL), (365, Stage.LEGAL), (10_000, Stage.LEGAL),
    ],
)
def test_default_ladder_stage_for_dpd(dpd: int, stage: Stage) -> None:
    assert stage_for_dpd(POLICY, dpd) == stage


def test_default_ladder_entry_days_and_channels() -> None:
    assert [(r.stage, r.enter_at_dpd) for r in POLICY.ladder] == [
        (Stage.NOTICE, 1), (Stage.CALL, 8), (Stage.VISIT, 31), (Stage.AGENCY, 61), (Stage.LEGAL, 91)]
    notice = POLICY.rule_for(Stage.NOTICE)
    assert notice is not None and notice.channels == [Channel.SMS, Channel.EMAIL] and notice.repeat_every_days == 7
    assert POLICY.rule_for(Stage.CALL).channels == [Channel.CALL_TASK]  # type: ignore[union-attr]
    assert POLICY.rule_for(Stage.VISIT).channels == [Channel.VISIT_TASK]  # type: ignore[union-attr]


@FAST
@given(dpd=dpds)
def test_stage_for_dpd_is_the_highest_stage_reached(dpd: int) -> None:
    stage = stage_for_dpd(POLICY, dpd)
    reached = [r for r in POLICY.ladder if r.enter_at_dpd <= dpd]
    if reached:
        assert stage == reached[-1].stage
        nxt = next_stage_rule(POLICY, stage)
        assert nxt is None or nxt.enter_at_dpd > dpd
    else:
        assert stage == POLICY.ladder[0].stage


@FAST
@given(a=dpds, b=dpds)
def test_stage_for_dpd_is_monotonic(a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    assert stage_for_dpd(POLICY, lo).rank <= stage_for_dpd(POLICY, hi).rank


@FAST
@given(current=st.one_of(st.none(), stages), dpd=dpds)
def test_escalate_never_goes_backwards(current: Stage | None, dpd: int) -> None:
    new = escalate(POLICY, current, dpd)
    target = stage_for_dpd(POLICY, dpd)
    if current is None:
        assert new == target
    else:
        assert new.rank >= current.rank
        assert new == (current if current.rank > target.rank else target)


@FAST
@given(path=st.lists(dpds, min_size=1, max_size=30))
def test_escalation_along_any_dpd_path_only_climbs(path: list[int]) -> None:
    """Even when DPD is recomputed lower (a late correction), the stage never drops."""
    stage: Stage | None = None
    for dpd in path:
        new = escalate(POLICY, stage, dpd)
        if stage is not None:
            assert new.rank >= stage.rank
        stage = new
    assert stage == stage_for_dpd(POLICY, max(path))


def test_custom_ladder_without_some_stages() -> None:
    policy = Policy(ladder=[
        StageRule(stage=Stage.NOTICE, enter_at_dpd=3, channels=[Channel.SMS]),
        StageRule(stage=Stage.LEGAL, enter_at_dpd=45, channels=[Channel.LEGAL]),
    ])
    assert stage_for_dpd(policy, 10) == Stage.NOTICE
    assert stage_for_dpd(policy, 45) == Stage.LEGAL
    assert next_stage_rule(policy, Stage.NOTICE).stage == Stage.LEGAL  # type: ignore[union-attr]
    assert next_stage_rule(policy, Stage.LEGAL) is None
    assert escalate(policy, Stage.LEGAL, 3) == Stage.LEGAL


# ----------------------------------------------------------------------------- the clock

ZONES = ["Asia/Shanghai", "America/New_York", "Europe/London", "Australia/Sydney", "America/Santiago", "UTC"]
real_instants = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31),
                             timezones=st.just(UTC))


@FAST
@given(origin=real_instants, later=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400)),
       zone=st.sampled_from(ZONES))
def test_clock_is_the_identity_for_real_days(origin: datetime, later: timedelta, zone: str) -> None:
    clock = start_clock(origin, zone, 86400)
    real = origin + later
    loan = clock.loan_time(real)
    # Same instant (compared in UTC: Python never calls an ambiguous local time equal across zones).
    assert loan.astimezone(UTC) == real
    assert loan.tzinfo == ZoneInfo(zone) and loan.utcoffset() == real.astimezone(ZoneInfo(zone)).utcoffset()
    assert clock.real_time(loan) == real and clock.real_time(loan).tzinfo == UTC
    assert clock.real_duration(3600) == timedelta(hours=1)


@FAST
@given(origin=real_instants, zone=st.sampled_from(ZONES),
       day_length=st.sampled_from([1.0, 2.5, 30.0, 60.0, 864.0, 3600.0, 43200.0]),
       loan_days=st.floats(min_value=0, max_value=800, allow_nan=False))
def test_clock_round_trip_with_compressed_days(origin: datetime, zone: str, day_length: float,
                                               loan_days: float) -> None:
    real_seconds = loan_days * day_length
    clock = start_clock(origin, zone, day_length)
    real = origin + timedelta(seconds=real_seconds)
    loan = clock.loan_time(real)
    scale = 86400 / day_length
    # Loan time runs `scale` times faster, measured in absolute (not wall-clock) time.
    expected = origin + timedelta(seconds=real_seconds * scale)
    assert abs((loan - expected).total_seconds()) < 1e-3 * scale + 1e-3
    back = clock.real_time(loan)
    assert abs((back - real).total_seconds()) < 1e-3
    # The same in the other direction, and whatever zone the loan instant is written in.
    again = clock.loan_time(clock.real_time(loan.astimezone(UTC)))
    assert abs((again - loan).total_seconds()) < 1e-3 * scale + 1e-3


@FAST
@given(origin=real_instants, zone=st.sampled_from(ZONES),
       day_length=st.sampled_from([30.0, 864.0, 3600.0]),
       loan_days=st.floats(min_value=0, max_value=800, allow_nan=False))
def test_clock_is_the_same_after_a_json_round_trip(origin: datetime, zone: str, day_length: float,
                                                  loan_days: float) -> None:
    """Continue-as-new carries the clock as JSON: its origins come back with fixed offsets. The loan
    calendar must not move by the DST change (it did: wall-clock arithmetic on the zone-aware origin)."""
    clock = start_clock(origin, zone, day_length)
    carried = LoanClock.model_validate_json(clock.model_dump_json())
    real = origin + timedelta(seconds=loan_days * day_length)
    assert abs((clock.loan_time(real) - carried.loan_time(real)).total_seconds()) < 1e-2
    midnight = clock.local_midnight(clock.loan_time(real).date() + timedelta(days=1))
    assert abs((clock.real_time(midnight) - carried.real_time(midnight)).total_seconds()) < 1e-3
    assert abs((clock.real_time(midnight) - clock.real_time(midnight.astimezone(UTC))).total_seconds()) < 1e-3


def test_compressed_clock_across_new_york_spring_forward() -> None:
    # 2025-03-09 02:00 EST -> 03:00 EDT. One loan day is 864 real seconds (100x).
    origin = datetime(2025, 3, 8, 12, 0, tzinfo=UTC)  # 07:00 EST
    clock = start_clock(origin, "America/New_York", 864)
    m9, m10 = clock.local_midnight(date(2025, 3, 9)), clock.local_midnight(date(2025, 3, 10))
    # The loan day of the change has 23 hours, so it lasts 23/24 of a compressed day.
    assert clock.real_time(m10) - clock.real_time(m9) == timedelta(seconds=864 * 23 / 24)
    real = clock.real_time(m10)
    assert clock.loan_time(real) == m10
    assert clock.loan_time(real).isoformat() == "2025-03-10T00:00:00-04:00"


def test_local_midnight_across_dst_in_new_york() -> None:
    clock = start_clock(datetime(2025, 1, 1, tzinfo=UTC), "America/New_York", 86400)
    spring = [clock.local_midnight(date(2025, 3, d)) for d in (8, 9, 10)]
    fall = [clock.local_midnight(date(2025, 11, d)) for d in (1, 2, 3)]
    for m in spring + fall:
        assert (m.hour, m.minute) == (0, 0) and m.astimezone(ZoneInfo("America/New_York")).time() == time(0)
    assert [m.utcoffset() for m in spring] == [timedelta(hours=-5), timedelta(hours=-5), timedelta(hours=-4)]
    assert [m.utcoffset() for m in fall] == [timedelta(hours=-4), timedelta(hours=-4), timedelta(hours=-5)]
    # Absolute lengths of the local days: 24, 23 (spring forward), 24, 25 (fall back).
    utc = [m.astimezone(UTC) for m in spring + fall]
    assert utc[1] - utc[0] == timedelta(hours=24)
    assert utc[2] - utc[1] == timedelta(hours=23)
    assert utc[4] - utc[3] == timedelta(hours=24)
    assert utc[5] - utc[4] == timedelta(hours=25)
    assert spring[2].astimezone(UTC) == datetime(2025, 3, 10, 4, 0, tzinfo=UTC)
    assert fall[2].astimezone(UTC) == datetime(2025, 11, 3, 5, 0, tzinfo=UTC)


def test_local_midnight_when_midnight_does_not_exist() -> None:
    """America/Santiago springs forward at 24:00 -> 01:00: the day starts at its first valid instant."""
    clock = start_clock(datetime(2024, 1, 1, tzinfo=UTC), "America/Santiago", 86400)
    m = clock.local_midnight(date(2024, 9, 8))
    start = m.astimezone(UTC)
    assert start == datetime(2024, 9, 8, 4, 0, tzinfo=UTC)  # 00:00 -04 == 01:00 -03, the first valid instant
    assert start.astimezone(ZoneInfo("America/Santiago")).isoformat() == "2024-09-08T01:00:00-03:00"
    assert (start - timedelta(microseconds=1)).astimezone(ZoneInfo("America/Santiago")).date() == date(2024, 9, 7)


@FAST
@given(day=st.dates(min_value=date(2020, 1, 1), max_value=date(2035, 12, 31)), zone=st.sampled_from(ZONES))
def test_local_midnight_starts_the_day(day: date, zone: str) -> None:
    clock = start_clock(datetime(2020, 1, 1, tzinfo=UTC), zone, 86400)
    z = ZoneInfo(zone)
    start = clock.local_midnight(day).astimezone(UTC)
    assert start.astimezone(z).date() == day
    assert (start - timedelta(microseconds=1)).astimezone(z).date() == day - timedelta(days=1)
    nine = clock.at_local(day, time(9)).astimezone(z)
    assert (nine.date(), nine.time()) == (day, time(9))
