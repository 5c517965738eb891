"""Independent, naive answers for schedule tests, and hypothesis strategies for schedules.

The oracle walks the calendar one day (or one minute) at a time and never touches ``rrule``, so a
mistake in how the engine drives ``rrule`` cannot hide in both places at once.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from engine.config.models import Schedule
from engine.config.names import WEEKDAYS

UTC = dt.timezone.utc
ONE_DAY = dt.timedelta(days=1)


# --- dates ----------------------------------------------------------------------------------


def last_day_of_month(day: dt.date) -> int:
    following = dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return (following - ONE_DAY).day


def naive_dates(schedule: Schedule) -> list[dt.date]:
    """Every delivery date, by testing each day of the range against SPEC section 4."""
    recurrence = schedule.recurrence
    blocked = set(schedule.do_not_disturb)
    start_monday = schedule.start_date - dt.timedelta(days=schedule.start_date.weekday())
    result = []
    day = schedule.start_date
    while day <= schedule.finish_date:
        name = WEEKDAYS[day.weekday()]
        if name in blocked:
            matches = False
        elif recurrence.type == "one_time":
            matches = True
        elif recurrence.type == "daily":
            matches = (day - schedule.start_date).days % recurrence.every == 0
        elif recurrence.type == "weekly":
            monday = day - dt.timedelta(days=day.weekday())
            week = (monday - start_monday).days // 7
            matches = name in recurrence.days and week % recurrence.every == 0
        else:
            last = last_day_of_month(day)
            wanted = last if recurrence.day == "last" else min(recurrence.day, last)
            matches = day.day == wanted
        if matches:
            result.append(day)
        day += ONE_DAY
    return result


# --- instants -------------------------------------------------------------------------------


def naive_instant(day: dt.date, hour: int, minute: int, zone: ZoneInfo) -> dt.datetime:
    """The earliest instant at which the local wall clock shows ``day hour:minute`` or later.

    That is SPEC section 4's rule in one sentence: an ambiguous time takes its first instant, and a
    time skipped by a DST gap becomes the first instant after the gap. Found by scanning UTC
    minute by minute, then second by second inside the last minute.
    """
    wall = dt.datetime(day.year, day.month, day.day, hour, minute)
    # Offsets on Earth lie within [-12h, +14h]; start well before any candidate.
    moment = (wall - dt.timedelta(hours=16)).replace(tzinfo=UTC)

    def reached(instant: dt.datetime) -> bool:
        return instant.astimezone(zone).replace(tzinfo=None, fold=0) >= wall

    assert not reached(moment)
    while not reached(moment):
        moment += dt.timedelta(minutes=1)
    earliest = moment
    for seconds in range(1, 61):
        candidate = moment - dt.timedelta(seconds=seconds)
        if reached(candidate):
            earliest = candidate
    return earliest


def transition_dates(zone: ZoneInfo, first: dt.date, last: dt.date) -> list[dt.date]:
    """Local dates on which the zone's UTC offset changes (found by comparing noon offsets)."""
    result = []
    day = first
    previous = dt.datetime(day.year, day.month, day.day, 0, 0, tzinfo=zone).utcoffset()
    while day <= last:
        following = day + ONE_DAY
        offset = dt.datetime(following.year, following.month, following.day, 0, 0, tzinfo=zone).utcoffset()
        if offset != previous:
            result.extend([day, following])
        previous = offset
        day = following
    return result


DST_ZONES = (
    "America/New_York",
    "Europe/London",
    "Europe/Berlin",
    "Australia/Sydney",
    "Australia/Lord_Howe",  # 30-minute DST
    "America/Santiago",  # transitions at midnight
    "America/Havana",  # transitions at midnight
    "Africa/Casablanca",  # DST suspended for Ramadan
    "Pacific/Chatham",
)
ZONES = (*DST_ZONES, "Asia/Manila", "UTC", "Asia/Kolkata")


# --- strategies -----------------------------------------------------------------------------

@st.composite
def windows(draw, max_size: int = 3) -> list[dict[str, str]]:
    """Ordered, non-touching windows as marketers write them ("9:00" or "09:00")."""
    count = draw(st.integers(1, max_size))
    minutes = sorted(draw(st.sets(st.integers(0, 23 * 60 + 59), min_size=2 * count, max_size=2 * count)))

    def text(total: int) -> str:
        hour, minute = divmod(total, 60)
        return f"{hour}:{minute:02d}" if draw(st.booleans()) and hour < 10 else f"{hour:02d}:{minute:02d}"

    return [{"start": text(minutes[2 * i]), "finish": text(minutes[2 * i + 1])} for i in range(count)]


recurrences = st.one_of(
    st.just({"type": "one_time"}),
    st.builds(lambda n: {"type": "daily", "every": n}, st.one_of(st.integers(1, 10), st.integers(1, 366))),
    st.builds(
        lambda days, n: {"type": "weekly", "days": days, "every": n},
        st.lists(st.sampled_from(WEEKDAYS), min_size=1, max_size=7, unique=True),
        st.one_of(st.integers(1, 5), st.integers(1, 53)),
    ),
    st.builds(lambda d: {"type": "monthly", "day": d}, st.one_of(st.integers(1, 31), st.integers(27, 31), st.just("last"))),
)


@st.composite
def schedules(draw, max_days: int = 800, allow_reversed: bool = True) -> Schedule:
    """Random schedules between 2023 and 2033 (leap years 2024, 2028, 2032 included)."""
    start = draw(st.dates(dt.date(2023, 1, 1), dt.date(2033, 12, 31)))
    low = -40 if allow_reversed else 0
    length = draw(st.integers(low, max_days))
    return Schedule(
        start_date=start,
        finish_date=start + dt.timedelta(days=length),
        windows=draw(windows()),
        do_not_disturb=draw(st.lists(st.sampled_from(WEEKDAYS), max_size=7, unique=True)),
        recurrence=draw(recurrences),
    )


def schedule(start: str, finish: str, recurrence: dict, windows=None, do_not_disturb=()) -> Schedule:
    """A schedule from ISO dates, with one 09:00-11:30 window unless told otherwise."""
    return Schedule(
        start_date=dt.date.fromisoformat(start),
        finish_date=dt.date.fromisoformat(finish),
        windows=windows or [{"start": "09:00", "finish": "11:30"}],
        do_not_disturb=list(do_not_disturb),
        recurrence=recurrence,
    )
