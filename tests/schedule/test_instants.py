"""Wall-clock window times to instants: DST gaps move forward, ambiguous times take the first."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from schedule_oracle import DST_ZONES, ZONES, naive_instant, schedule, transition_dates

from engine.errors import CampaignsError
from engine.schedule.occurrences import find_occurrence, occurrences, wall_instant

UTC = dt.timezone.utc
NEW_YORK = "America/New_York"


def utc(occurrence_window_time: dt.datetime) -> str:
    return occurrence_window_time.astimezone(UTC).isoformat()


def test_spring_forward_gap_moves_to_the_first_valid_instant():
    # 2026-03-08: New York clocks jump from 02:00 EST to 03:00 EDT (07:00 UTC).
    daily = schedule("2026-03-07", "2026-03-09", {"type": "daily"}, windows=[{"start": "2:30", "finish": "05:00"}])
    found = {o.key: o.windows[0] for o in occurrences(daily, NEW_YORK)}
    assert utc(found["2026-03-07"].start) == "2026-03-07T07:30:00+00:00"  # EST
    assert utc(found["2026-03-08"].start) == "2026-03-08T07:00:00+00:00"  # moved to 03:00 EDT
    assert found["2026-03-08"].start.isoformat() == "2026-03-08T03:00:00-04:00"
    assert utc(found["2026-03-08"].finish) == "2026-03-08T09:00:00+00:00"  # 05:00 EDT
    assert utc(found["2026-03-09"].start) == "2026-03-09T06:30:00+00:00"  # EDT


def test_fall_back_ambiguous_time_takes_the_earlier_instant():
    # 2026-11-01: New York clocks go back from 02:00 EDT to 01:00 EST, so 01:30 happens twice.
    daily = schedule("2026-10-31", "2026-11-02", {"type": "daily"}, windows=[{"start": "1:30", "finish": "4:00"}])
    found = {o.key: o.windows[0] for o in occurrences(daily, NEW_YORK)}
    assert utc(found["2026-10-31"].start) == "2026-10-31T05:30:00+00:00"
    assert utc(found["2026-11-01"].start) == "2026-11-01T05:30:00+00:00"  # 01:30 EDT, not EST
    assert utc(found["2026-11-01"].finish) == "2026-11-01T09:00:00+00:00"  # 04:00 EST
    assert found["2026-11-01"].finish - found["2026-11-01"].start == dt.timedelta(hours=2, minutes=30)
    assert (found["2026-11-01"].finish.astimezone(UTC) - found["2026-11-01"].start.astimezone(UTC)) == dt.timedelta(
        hours=3, minutes=30
    )  # the window really lasts an hour longer that day
    assert utc(found["2026-11-02"].start) == "2026-11-02T06:30:00+00:00"


def test_open_in_the_repeated_hour_is_judged_by_instant_not_wall_clock():
    # Window 00:00-01:45 EDT on the fall-back day. 01:15 EST (fold=1) is 06:15 UTC: after it closed,
    # although its wall clock reads earlier than 01:45.
    daily = schedule("2026-11-01", "2026-11-01", {"type": "daily"}, windows=[{"start": "0:00", "finish": "1:45"}])
    occurrence = find_occurrence(daily, NEW_YORK, "2026-11-01")
    zone = ZoneInfo(NEW_YORK)
    second_pass = dt.datetime(2026, 11, 1, 1, 15, fold=1, tzinfo=zone)
    first_pass = dt.datetime(2026, 11, 1, 1, 15, fold=0, tzinfo=zone)
    assert occurrence.is_open(first_pass)
    assert not occurrence.is_open(second_pass)
    assert occurrence.window_at(second_pass) is None


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    zone_name=st.sampled_from(DST_ZONES),
    hour=st.integers(0, 23),
    minute=st.sampled_from([0, 1, 15, 29, 30, 31, 45, 59]),
)
def test_instant_is_the_earliest_moment_the_wall_clock_reaches_it_on_transition_days(data, zone_name, hour, minute):
    zone = ZoneInfo(zone_name)
    day = data.draw(st.sampled_from(transition_dates(zone, dt.date(2026, 1, 1), dt.date(2027, 12, 31))))
    assert wall_instant(day, hour, minute, zone).astimezone(UTC) == naive_instant(day, hour, minute, zone)


@settings(max_examples=100, deadline=None)
@given(
    zone_name=st.sampled_from(ZONES),
    day=st.dates(dt.date(2023, 1, 1), dt.date(2033, 12, 31)),
    hour=st.integers(0, 23),
    minute=st.integers(0, 59),
)
def test_instant_is_the_earliest_moment_the_wall_clock_reaches_it_on_any_day(zone_name, day, hour, minute):
    zone = ZoneInfo(zone_name)
    assert wall_instant(day, hour, minute, zone).astimezone(UTC) == naive_instant(day, hour, minute, zone)


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "", "../etc/passwd"])
def test_unknown_time_zone_is_a_user_error(name):
    with pytest.raises(CampaignsError, match="time zone"):
        list(occurrences(schedule("2026-12-01", "2026-12-02", {"type": "daily"}), name))
