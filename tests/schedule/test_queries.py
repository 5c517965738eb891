"""preview, find, occurrences_between and due_occurrences: what plan, schedule and run ask."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from schedule_oracle import naive_dates, schedule, schedules

import engine.schedule.occurrences as engine_occurrences
from engine.schedule.occurrences import (
    count_occurrences,
    due_occurrences,
    find_occurrence,
    occurrences,
    occurrences_between,
    preview,
)

UTC = dt.timezone.utc
ZONE = "Asia/Manila"


def instant(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


moments = st.datetimes(dt.datetime(2022, 6, 1), dt.datetime(2035, 6, 1), timezones=st.just(UTC))


@settings(max_examples=200, deadline=None)
@given(schedules(max_days=300), moments, st.integers(0, 8))
def test_preview_is_the_next_n_unfinished_and_the_total(schedule_, after, n):
    everything = list(occurrences(schedule_, ZONE))
    result = preview(schedule_, ZONE, after, n)
    assert result.total == len(everything) == count_occurrences(schedule_)
    assert list(result.upcoming) == [o for o in everything if o.finish > after][:n]


@settings(max_examples=200, deadline=None)
@given(schedules(max_days=300), st.data())
def test_find_returns_exactly_the_occurrences_the_schedule_has(schedule_, data):
    everything = {o.key: o for o in occurrences(schedule_, ZONE)}
    probe = data.draw(st.dates(schedule_.start_date - dt.timedelta(days=3), schedule_.start_date + dt.timedelta(days=310)))
    for key in [probe.isoformat(), "once", *list(everything)[:3]]:
        assert find_occurrence(schedule_, ZONE, key) == everything.get(key)


@pytest.mark.parametrize("key", ["2026-12-1", "20261201", "not-a-date", "", "2026-02-30"])
def test_find_rejects_keys_that_are_not_dates(key):
    assert find_occurrence(schedule("2026-01-01", "2026-12-31", {"type": "daily"}), ZONE, key) is None


@settings(max_examples=200, deadline=None)
@given(schedules(max_days=300), st.data())
def test_between_keeps_occurrences_with_a_date_in_the_range(schedule_, data):
    around = st.one_of(
        st.none(), st.dates(schedule_.start_date - dt.timedelta(days=20), schedule_.start_date + dt.timedelta(days=320))
    )
    start, finish = data.draw(around), data.draw(around)
    dates = naive_dates(schedule_)

    def inside(day: dt.date) -> bool:
        return (start is None or day >= start) and (finish is None or day <= finish)

    found = list(occurrences_between(schedule_, ZONE, start, finish))
    if schedule_.recurrence.type == "one_time":
        assert [o.key for o in found] == (["once"] if any(map(inside, dates)) else [])
        if found:
            assert found[0] == next(occurrences(schedule_, ZONE))  # whole, not cut to the range
    else:
        assert [o.key for o in found] == [d.isoformat() for d in dates if inside(d)]


@settings(max_examples=200, deadline=None)
@given(schedules(max_days=200), moments, st.one_of(st.none(), moments))
def test_due_occurrences_are_those_started_and_not_over_before_since(schedule_, at, since):
    everything = list(occurrences(schedule_, ZONE))
    expected = [o for o in everything if o.start <= at and (since is None or o.finish > since)]
    assert list(due_occurrences(schedule_, ZONE, at, since=since)) == expected


def test_preview_of_a_ten_year_daily_schedule_builds_only_what_it_shows(monkeypatch):
    daily = schedule("2026-01-01", "2035-12-31", {"type": "daily"})
    built = []
    real = engine_occurrences._windows_on
    monkeypatch.setattr(engine_occurrences, "_windows_on", lambda *args: built.append(args[0]) or real(*args))
    result = preview(daily, ZONE, instant("2031-06-15T10:00:00+08:00"), 5)
    assert result.total == (dt.date(2035, 12, 31) - dt.date(2026, 1, 1)).days + 1
    assert [o.key for o in result.upcoming] == [f"2031-06-{d}" for d in range(15, 20)]
    assert len(built) <= 5 + 3  # a couple of days before `after` may be looked at, not 2,000


def test_preview_counts_an_open_occurrence_as_upcoming():
    daily = schedule("2026-12-01", "2026-12-05", {"type": "daily"})
    during = preview(daily, ZONE, instant("2026-12-02T10:00:00+08:00"), 2)
    assert [o.key for o in during.upcoming] == ["2026-12-02", "2026-12-03"]
    after_close = preview(daily, ZONE, instant("2026-12-02T11:30:00+08:00"), 2)
    assert [o.key for o in after_close.upcoming] == ["2026-12-03", "2026-12-04"]


def test_preview_rejects_a_naive_moment():
    with pytest.raises(ValueError, match="timezone-aware"):
        preview(schedule("2026-12-01", "2026-12-05", {"type": "daily"}), ZONE, dt.datetime(2026, 12, 1), 2)


def test_is_open_and_window_at_follow_half_open_windows():
    daily = schedule(
        "2026-12-01",
        "2026-12-01",
        {"type": "daily"},
        windows=[{"start": "09:00", "finish": "11:30"}, {"start": "18:00", "finish": "21:00"}],
    )
    occurrence = find_occurrence(daily, ZONE, "2026-12-01")
    first, second = occurrence.windows
    assert occurrence.window_at(instant("2026-12-01T09:00:00+08:00")) == first
    assert occurrence.window_at(instant("2026-12-01T01:00:00+00:00")) == first  # same instant, other zone
    assert occurrence.window_at(instant("2026-12-01T11:30:00+08:00")) is None  # finish is exclusive
    assert not occurrence.is_open(instant("2026-12-01T15:00:00+08:00"))  # between windows
    assert occurrence.window_at(instant("2026-12-01T20:59:59+08:00")) == second
    assert not occurrence.is_open(instant("2026-12-01T21:00:00+08:00"))
    assert occurrence.start == first.start and occurrence.finish == second.finish


def test_has_occurrences_answers_schedules_that_can_never_match():
    # "Daily every 7 from a Monday with Mondays blocked" never matches: rrule alone would scan on
    # towards year 9999; the engine must see it up front (speed is measured in bench/, not here).
    from engine.schedule.occurrences import has_occurrences

    assert has_occurrences(schedule("2026-01-05", "2036-01-05", {"type": "weekly", "days": ["friday"], "every": 2}, do_not_disturb=["monday"]))
    assert has_occurrences(schedule("2026-01-31", "2027-01-31", {"type": "monthly", "day": 31}))
    assert not has_occurrences(schedule("2026-01-05", "2026-12-31", {"type": "daily", "every": 7}, do_not_disturb=["monday"]))
