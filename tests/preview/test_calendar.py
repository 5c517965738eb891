"""The preview's month calendars: the days a marketer sees are the days delivery uses."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config.models import Schedule
from engine.preview.calendar import dst_change, task_calendar
from engine.schedule.occurrences import occurrence_dates, site_zone


def schedule(**overrides) -> Schedule:
    data = {
        "start_date": "2026-12-01",
        "finish_date": "2026-12-31",
        "windows": [{"start": "09:00", "finish": "11:30"}, {"start": "18:00", "finish": "21:00"}],
        "do_not_disturb": ["monday"],
        "recurrence": {"type": "daily", "every": 2},
    }
    data.update(overrides)
    return Schedule.model_validate(data)


def days(calendar) -> dict[dt.date, object]:
    return {cell.date: cell for month in calendar.months for week in month.weeks for cell in week if cell.in_month}


def test_the_shipped_flash_sale_push_month():
    cells = days(task_calendar(schedule(), "Asia/Manila"))
    delivering = sorted(d.day for d, c in cells.items() if c.state == "occurrence")
    assert delivering == [1, 3, 5, 9, 11, 13, 15, 17, 19, 23, 25, 27, 29, 31]
    # Dec 7 and 21 are Mondays every-2-days lands on: skipped, not moved; Dec 14 and 28 are other Mondays
    assert [d.day for d, c in cells.items() if c.state == "skipped"] == [7, 21]
    assert [d.day for d, c in cells.items() if c.state == "dnd"] == [14, 28]
    assert cells[dt.date(2026, 12, 1)].windows == ("09:00–11:30", "18:00–21:00")
    assert cells[dt.date(2026, 12, 2)].state == "idle"


def test_days_outside_the_task_dates_and_the_month_limit():
    calendar = task_calendar(
        schedule(start_date="2026-12-10", finish_date="2028-01-05", do_not_disturb=[], recurrence={"type": "monthly", "day": "last"}),
        "Asia/Manila",
        max_months=12,
    )
    assert [m.key for m in calendar.months][:2] == ["2026-12", "2027-01"] and len(calendar.months) == 12
    assert calendar.more_months == 2  # Dec 2027 and Jan 2028 are not drawn
    cells = days(calendar)
    assert cells[dt.date(2026, 12, 9)].state == "outside"
    assert cells[dt.date(2027, 2, 28)].state == "occurrence"  # day "last" of February


def test_a_one_time_task_delivers_on_every_allowed_day_and_skips_do_not_disturb():
    calendar = task_calendar(
        schedule(start_date="2026-12-26", finish_date="2026-12-29", recurrence={"type": "one_time"}), "Asia/Manila"
    )
    cells = days(calendar)
    assert calendar.one_time
    assert {d.day: c.state for d, c in cells.items() if 26 <= d.day <= 29} == {
        26: "occurrence", 27: "occurrence", 28: "skipped", 29: "occurrence",
    }


def test_dst_days_are_marked_and_a_start_in_the_gap_shows_where_it_really_opens():
    # New York springs forward on 2026-03-08 (02:00 -> 03:00) and falls back on 2026-11-01
    calendar = task_calendar(
        schedule(
            start_date="2026-03-07",
            finish_date="2026-03-09",
            windows=[{"start": "02:30", "finish": "05:00"}],
            do_not_disturb=[],
            recurrence={"type": "daily", "every": 1},
        ),
        "America/New_York",
    )
    cells = days(calendar)
    spring = cells[dt.date(2026, 3, 8)]
    assert spring.dst == "DST: UTC-05:00 → UTC-04:00"
    assert spring.windows == ("03:00–05:00",)
    assert cells[dt.date(2026, 3, 7)].dst is None and cells[dt.date(2026, 3, 7)].windows == ("02:30–05:00",)
    assert dst_change(dt.date(2026, 11, 1), site_zone("America/New_York")) == "DST: UTC-04:00 → UTC-05:00"
    assert "2026-03-08: delivers 03:00–05:00; DST" in spring.label


@settings(max_examples=40, deadline=None)
@given(
    start=st.dates(min_value=dt.date(2026, 1, 1), max_value=dt.date(2027, 12, 31)),
    length=st.integers(min_value=0, max_value=120),
    every=st.integers(min_value=1, max_value=9),
    dnd=st.sets(st.sampled_from(["monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]), max_size=3),
)
def test_occurrence_days_are_exactly_the_schedule_dates(start, length, every, dnd):
    sched = schedule(
        start_date=start.isoformat(),
        finish_date=(start + dt.timedelta(days=length)).isoformat(),
        do_not_disturb=sorted(dnd),
        recurrence={"type": "daily", "every": every},
    )
    calendar = task_calendar(sched, "Europe/Berlin", max_months=6)
    cells = days(calendar)
    drawn = {d for d, c in cells.items() if c.state == "occurrence"}
    horizon = max(cells)
    assert drawn == {d for d in occurrence_dates(sched) if d <= horizon}
    for day, cell in cells.items():
        if cell.state in ("skipped", "dnd"):
            assert day.strftime("%A").lower() in dnd
