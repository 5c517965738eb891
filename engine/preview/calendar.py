"""A task's schedule as month grids in its site's time zone, for the preview page.

Built from ``engine.schedule.occurrences`` (the dates and instants the executor delivers on), so
the calendar cannot disagree with delivery: a day is an occurrence day only when the schedule
yields it, its windows are the occurrence's own windows (a start in a DST gap shows where it
really opens), and a would-be occurrence that falls on a do-not-disturb weekday is shown as
skipped, not moved. Days whose UTC offset changes are marked as DST days.
"""

from __future__ import annotations

import bisect
import calendar
import datetime as dt
import itertools
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from engine.config.models import Schedule
from engine.config.names import WEEKDAYS
from engine.schedule.occurrences import ONCE, occurrence_dates, occurrences_between, site_zone

MAX_MONTHS = 12
"""Months drawn per task; a longer schedule says how many more it has."""

DayState = str  # "occurrence" | "skipped" | "dnd" | "idle" | "outside"


@dataclass(frozen=True)
class DayCell:
    """One day of a month grid. ``state``: ``occurrence`` (delivers, ``windows`` says when),
    ``skipped`` (would deliver but is a do-not-disturb weekday), ``dnd`` (another do-not-disturb
    day in the task's dates), ``idle`` (in the dates, no delivery), ``outside`` (before the start
    or after the finish); ``in_month`` is False for the leading and trailing days of other months."""

    date: dt.date
    in_month: bool
    state: DayState
    windows: tuple[str, ...] = ()
    dst: str | None = None

    @property
    def label(self) -> str:
        """What a screen reader (and a test) reads for the day."""
        words = {
            "occurrence": "delivers " + ", ".join(self.windows),
            "skipped": "skipped: do not disturb",
            "dnd": "do not disturb",
            "idle": "no delivery",
            "outside": "outside the task's dates",
        }[self.state]
        return f"{self.date.isoformat()}: {words}" + (f"; {self.dst}" if self.dst else "")


@dataclass(frozen=True)
class MonthGrid:
    year: int
    month: int
    weeks: tuple[tuple[DayCell, ...], ...]

    @property
    def title(self) -> str:
        return f"{calendar.month_name[self.month]} {self.year}"

    @property
    def key(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


@dataclass(frozen=True)
class TaskCalendar:
    timezone: str
    months: tuple[MonthGrid, ...]
    more_months: int  # months of the schedule not drawn (past MAX_MONTHS)
    occurrence_days: int  # occurrence days in the drawn months
    one_time: bool


def dst_change(day: dt.date, zone: ZoneInfo) -> str | None:
    """``"DST: UTC+01:00 → UTC+02:00"`` when the zone's offset changes during ``day``, else None."""
    start = dt.datetime(day.year, day.month, day.day, tzinfo=zone)
    following = day + dt.timedelta(days=1)
    end = dt.datetime(following.year, following.month, following.day, tzinfo=zone)
    before, after = start.utcoffset(), end.utcoffset()
    if before == after or before is None or after is None:
        return None
    return f"DST: {_offset(before)} → {_offset(after)}"


def _offset(delta: dt.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{rest:02d}"


def _clock(moment: dt.datetime, zone: ZoneInfo, day: dt.date) -> str:
    local = moment.astimezone(zone)
    text = local.strftime("%H:%M")
    return text if local.date() == day else f"{text} (+{(local.date() - day).days}d)"


def _months(first: dt.date, last: dt.date) -> list[tuple[int, int]]:
    months = []
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        months.append((year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def _windows_by_day(schedule: Schedule, timezone: str, first: dt.date, last: dt.date) -> dict[dt.date, tuple[str, ...]]:
    """Local ``HH:MM–HH:MM`` windows of each occurrence day in ``[first, last]``."""
    zone = site_zone(timezone)
    per_day = len(schedule.windows)
    found: dict[dt.date, tuple[str, ...]] = {}
    for occurrence in occurrences_between(schedule, timezone, first, last):
        if occurrence.key == ONCE:  # one occurrence over the whole span: only this range's dates
            dates = occurrence.dates
            position = bisect.bisect_left(dates, first)
            while position < len(dates) and dates[position] <= last:
                day = dates[position]
                windows = [occurrence.windows[position * per_day + k] for k in range(per_day)]
                found[day] = tuple(f"{_clock(w.start, zone, day)}–{_clock(w.finish, zone, day)}" for w in windows)
                position += 1
            continue
        day = dt.date.fromisoformat(occurrence.key)
        found[day] = tuple(f"{_clock(w.start, zone, day)}–{_clock(w.finish, zone, day)}" for w in occurrence.windows)
    return found


def task_calendar(schedule: Schedule, timezone: str, *, max_months: int = MAX_MONTHS) -> TaskCalendar:
    """The month grids of ``schedule`` from its start month (at most ``max_months``)."""
    zone = site_zone(timezone)
    all_months = _months(schedule.start_date, schedule.finish_date)
    shown = all_months[:max_months]
    last_year, last_month = shown[-1]
    drawn_last = min(schedule.finish_date, dt.date(last_year, last_month, calendar.monthrange(last_year, last_month)[1]))
    delivering = _windows_by_day(schedule, timezone, schedule.start_date, drawn_last)
    dnd = {WEEKDAYS.index(day) for day in schedule.do_not_disturb}
    skipped: set[dt.date] = set()
    if dnd:  # the same recurrence without do-not-disturb: the days it removes are skipped
        free = schedule.model_copy(update={"do_not_disturb": []})
        skipped = {
            day
            for day in itertools.takewhile(lambda d: d <= drawn_last, occurrence_dates(free))
            if day not in delivering
        }
    grids = []
    weeks_of = calendar.Calendar(firstweekday=0).monthdatescalendar
    for year, month in shown:
        weeks = []
        for week in weeks_of(year, month):
            cells = []
            for day in week:
                if not schedule.start_date <= day <= schedule.finish_date:
                    state = "outside"
                elif day in delivering:
                    state = "occurrence"
                elif day in skipped:
                    state = "skipped"
                elif day.weekday() in dnd:
                    state = "dnd"
                else:
                    state = "idle"
                cells.append(DayCell(day, day.month == month, state, delivering.get(day, ()), dst_change(day, zone)))
            weeks.append(tuple(cells))
        grids.append(MonthGrid(year, month, tuple(weeks)))
    return TaskCalendar(
        timezone=timezone,
        months=tuple(grids),
        more_months=len(all_months) - len(shown),
        occurrence_days=len(delivering),
        one_time=schedule.recurrence.type == "one_time",
    )
