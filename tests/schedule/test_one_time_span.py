"""A one-time occurrence's windows are built as they are read: the same windows, in the same
order, but an executor pass (start, finish, the window open now) builds only a few days of them."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from schedule_oracle import ZONES, schedule, windows

from engine.config.models import Schedule
from engine.config.names import WEEKDAYS
from engine.schedule import occurrences as occ
from engine.schedule.occurrences import due_occurrences, find_occurrence, occurrence_dates, occurrences

UTC = dt.timezone.utc


@st.composite
def one_time(draw) -> Schedule:
    start = draw(st.dates(dt.date(2024, 1, 1), dt.date(2030, 12, 31)))
    return Schedule(
        start_date=start,
        finish_date=start + dt.timedelta(days=draw(st.integers(0, 500))),
        windows=draw(windows()),
        do_not_disturb=draw(st.lists(st.sampled_from(WEEKDAYS), max_size=6, unique=True)),
        recurrence={"type": "one_time"},
    )


def eager(schedule_: Schedule, zone_name: str) -> tuple:
    """Every window of every date, built at once (what the occurrence held before)."""
    zone = occ.site_zone(zone_name)
    walls = occ._wall_windows(schedule_.windows)
    return tuple(window for day in occurrence_dates(schedule_) for window in occ._windows_on(day, walls, zone))


@settings(max_examples=150, deadline=None)
@given(schedule_=one_time(), zone_name=st.sampled_from(ZONES), data=st.data())
def test_the_windows_built_on_demand_are_the_windows_built_at_once(schedule_, zone_name, data):
    [once] = list(occurrences(schedule_, zone_name)) or [None]
    expected = eager(schedule_, zone_name)
    if once is None:
        assert expected == ()
        return
    assert tuple(once.windows) == expected and once.windows == expected and len(once.windows) == len(expected)
    assert (once.start, once.finish) == (expected[0].start, expected[-1].finish)
    index = data.draw(st.integers(-len(expected), len(expected) - 1))
    assert once.windows[index] == expected[index]
    assert once.dates == tuple(dict.fromkeys(window.start.date() for window in expected))
    first, last = expected[0].start.astimezone(UTC), expected[-1].finish.astimezone(UTC)
    for _ in range(5):
        moment = first + (last - first) * data.draw(st.floats(-0.01, 1.01))
        moment = moment.replace(second=0, microsecond=0)
        open_ = next((window for window in expected if window.contains(moment)), None)
        assert once.window_at(moment) == open_
        assert once.is_open(moment) == (open_ is not None)


@pytest.fixture
def built_days(monkeypatch) -> list:
    calls: list = []
    real = occ._windows_on

    def counting(day, walls, zone):
        calls.append(day)
        return real(day, walls, zone)

    monkeypatch.setattr(occ, "_windows_on", counting)
    return calls


def test_an_executor_pass_over_a_ten_year_one_time_task_builds_a_few_days(built_days):
    task = schedule(
        "2026-12-01",
        "2036-11-30",
        {"type": "one_time"},
        windows=[{"start": "09:00", "finish": "11:30"}, {"start": "18:00", "finish": "21:00"}],
    )
    now = dt.datetime(2031, 6, 15, 10, 0, tzinfo=UTC)  # 18:00 in Manila: the evening window is open
    [once] = list(due_occurrences(task, "Asia/Manila", now, since=now - dt.timedelta(minutes=1)))
    window = once.window_at(now)
    assert window is not None and window.start.isoformat() == "2031-06-15T18:00:00+08:00"
    assert once.finish.isoformat() == "2036-11-30T21:00:00+08:00" and once.finish > now
    assert len(built_days) <= 6  # the first, the last, and the days around now; not 3,653
    assert find_occurrence(task, "Asia/Manila", "once") == once
