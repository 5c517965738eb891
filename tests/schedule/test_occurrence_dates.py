"""Which dates a schedule delivers on: the engine against a naive day-by-day oracle."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from schedule_oracle import naive_dates, schedule, schedules

from engine.config.names import WEEKDAYS
from engine.schedule.occurrences import (
    count_occurrences,
    has_occurrences,
    occurrence_dates,
    occurrences,
)


@settings(max_examples=400, deadline=None)
@given(schedules())
def test_dates_match_a_day_by_day_walk(schedule_):
    assert list(occurrence_dates(schedule_)) == naive_dates(schedule_)


@settings(max_examples=400, deadline=None)
@given(schedules())
def test_has_and_count_agree_with_the_dates(schedule_):
    dates = naive_dates(schedule_)
    assert has_occurrences(schedule_) == bool(dates)
    expected = min(len(dates), 1) if schedule_.recurrence.type == "one_time" else len(dates)
    assert count_occurrences(schedule_) == expected


@settings(max_examples=150, deadline=None)
@given(schedules(max_days=120), st.sampled_from(["Asia/Manila", "America/New_York", "Australia/Lord_Howe"]))
def test_occurrence_keys_and_window_dates(schedule_, zone):
    dates = naive_dates(schedule_)
    found = list(occurrences(schedule_, zone))
    if schedule_.recurrence.type == "one_time":
        assert [o.key for o in found] == (["once"] if dates else [])
        if dates:
            assert len(found[0].windows) == len(dates) * len(schedule_.windows)
            assert found[0].dates == tuple(dates)
    else:
        assert [o.key for o in found] == [day.isoformat() for day in dates]
        for occurrence in found:
            assert len(occurrence.windows) == len(schedule_.windows)
            assert {w.start.date().isoformat() for w in occurrence.windows} == {occurrence.key}
    for occurrence in found:
        starts = [w.start.astimezone(dt.timezone.utc) for w in occurrence.windows]
        assert starts == sorted(starts)
    firsts = [o.start.astimezone(dt.timezone.utc) for o in found]
    assert firsts == sorted(firsts)


@pytest.mark.parametrize("year", [2027, 2028])
@pytest.mark.parametrize("day", [29, 30, 31])
def test_monthly_day_past_february_clamps_to_its_last_day(year, day):
    monthly = schedule(f"{year}-01-01", f"{year}-12-31", {"type": "monthly", "day": day})
    dates = list(occurrence_dates(monthly))
    assert len(dates) == 12  # every month delivers once, short ones included
    february = dt.date(year, 3, 1) - dt.timedelta(days=1)  # 28th in 2027, 29th in 2028
    assert dt.date(year, 2, min(day, february.day)) in dates
    assert dt.date(year, 4, min(day, 30)) in dates
    assert dt.date(year, 1, day) in dates


def test_monthly_last_is_the_last_day_of_every_month():
    dates = list(occurrence_dates(schedule("2028-01-01", "2028-12-31", {"type": "monthly", "day": "last"})))
    assert [(d + dt.timedelta(days=1)).day for d in dates] == [1] * 12
    assert dt.date(2028, 2, 29) in dates


def test_monthly_clamped_day_on_do_not_disturb_is_skipped_not_moved():
    # 2027-02-28 is a Sunday: day 31 clamps to it, and Sunday is do-not-disturb.
    monthly = schedule("2027-02-01", "2027-03-31", {"type": "monthly", "day": 31}, do_not_disturb=["sunday"])
    assert dt.date(2027, 2, 28).weekday() == WEEKDAYS.index("sunday")
    assert list(occurrence_dates(monthly)) == [dt.date(2027, 3, 31)]


def test_daily_every_two_runs_across_the_month_end():
    daily = schedule("2026-01-29", "2026-02-06", {"type": "daily", "every": 2})
    dates = list(occurrence_dates(daily))
    assert dt.date(2026, 1, 31) in dates and dt.date(2026, 2, 2) in dates
    assert dt.date(2026, 2, 1) not in dates
    assert all((b - a).days == 2 for a, b in zip(dates, dates[1:]))


def test_daily_date_on_do_not_disturb_is_skipped_not_moved():
    # 2026-12-07 is a Monday.
    daily = schedule("2026-12-01", "2026-12-13", {"type": "daily", "every": 3}, do_not_disturb=["monday"])
    dates = list(occurrence_dates(daily))
    assert dt.date(2026, 12, 7) not in dates
    assert dt.date(2026, 12, 8) not in dates  # not moved to the next day
    assert dates == [dt.date(2026, 12, d) for d in (1, 4, 10, 13)]


def test_weekly_every_two_counts_weeks_from_the_monday_of_the_start_week():
    # Start on a Sunday (2026-11-29): its week is Mon 23 .. Sun 29, so the next delivering week is
    # Mon 7 .. Sun 13 December, not the one starting on the following Sunday.
    weekly = schedule("2026-11-29", "2026-12-20", {"type": "weekly", "days": ["monday", "sunday"], "every": 2})
    assert dt.date(2026, 11, 29).weekday() == 6
    assert list(occurrence_dates(weekly)) == [dt.date(2026, 11, 29), dt.date(2026, 12, 7), dt.date(2026, 12, 13)]


def test_one_time_starting_on_do_not_disturb_spans_the_allowed_days():
    # 2026-12-07 is a Monday.
    once = schedule(
        "2026-12-07",
        "2026-12-09",
        {"type": "one_time"},
        windows=[{"start": "09:00", "finish": "11:30"}, {"start": "18:00", "finish": "21:00"}],
        do_not_disturb=["monday"],
    )
    (occurrence,) = occurrences(once, "Asia/Manila")
    assert occurrence.key == "once"
    assert occurrence.dates == (dt.date(2026, 12, 8), dt.date(2026, 12, 9))
    assert len(occurrence.windows) == 4
    assert occurrence.start.isoformat() == "2026-12-08T09:00:00+08:00"
    assert occurrence.finish.isoformat() == "2026-12-09T21:00:00+08:00"


def test_one_time_with_only_do_not_disturb_days_never_delivers():
    once = schedule("2026-12-05", "2026-12-06", {"type": "one_time"}, do_not_disturb=["saturday", "sunday"])
    assert not has_occurrences(once)
    assert list(occurrences(once, "Asia/Manila")) == []


@pytest.mark.parametrize(
    "recurrence",
    [{"type": "one_time"}, {"type": "daily", "every": 1}, {"type": "weekly", "days": ["monday"]}, {"type": "monthly", "day": 1}],
)
def test_finish_before_start_never_delivers(recurrence):
    reversed_ = schedule("2026-12-10", "2026-12-01", recurrence)
    assert not has_occurrences(reversed_)
    assert count_occurrences(reversed_) == 0


def test_single_day_range_is_inclusive():
    assert list(occurrence_dates(schedule("2026-12-01", "2026-12-01", {"type": "daily", "every": 5}))) == [
        dt.date(2026, 12, 1)
    ]


def test_weekly_only_on_do_not_disturb_days_never_delivers():
    weekly = schedule("2026-01-01", "2030-12-31", {"type": "weekly", "days": ["monday"]}, do_not_disturb=["monday"])
    assert not has_occurrences(weekly)


def test_daily_interval_that_only_reaches_blocked_weekdays_answers_quickly():
    # Every 7 days from a Monday only ever lands on Mondays; the answer must not scan to year 9999.
    daily = schedule("2026-12-07", "2036-12-31", {"type": "daily", "every": 7}, do_not_disturb=["monday"])
    assert not has_occurrences(daily)
    assert count_occurrences(daily) == 0
