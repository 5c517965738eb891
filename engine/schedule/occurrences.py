"""When a task delivers: its occurrences and their delivery windows (SPEC section 4).

Everything here is a pure function of a task's :class:`~engine.config.models.Schedule` and its
site's IANA time zone, so ``validate``, ``plan``, ``schedule`` and the executor all agree on the
same instants. Dates come from ``dateutil.rrule`` (cron cannot say "every 2 days from the start
date"); wall-clock times become instants with ``zoneinfo``.

Iteration is lazy and chronological: a ten-year daily schedule is never materialised to answer
"what comes next" (:func:`preview`) or "is there anything at all" (:func:`has_occurrences`).
The one-time occurrence holds every window of every date of its span (validation bounds the span
at ten years), and its windows are built only when asked for: its start and finish, and the
window open at an instant, cost the same for a ten-day and a ten-year task, so an executor pass
does not walk the whole span.

Instants are compared through UTC: two datetimes sharing one ``ZoneInfo`` compare by wall clock
and ignore ``fold``, which is wrong in the repeated hour of a fall-back day.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import DAILY, MONTHLY, WEEKLY, rrule

from engine.config.models import Daily, Monthly, OneTime, Schedule, Weekly, Window
from engine.config.names import WEEKDAYS
from engine.errors import CampaignsError

__all__ = [
    "ONCE",
    "DeliveryWindow",
    "Occurrence",
    "Preview",
    "TimeZoneError",
    "count_occurrences",
    "due_occurrences",
    "find_occurrence",
    "has_occurrences",
    "occurrence_dates",
    "occurrences",
    "occurrences_between",
    "preview",
    "site_zone",
    "wall_instant",
]

ONCE = "once"
"""Key of the single occurrence of a one-time task."""

UTC = dt.timezone.utc
_MONDAY = 0  # rrule's MO, and Python's date.weekday() of a Monday


class TimeZoneError(CampaignsError, ValueError):
    """A site names a time zone that is not in the IANA database."""


def site_zone(name: str) -> ZoneInfo:
    """The ``ZoneInfo`` for an IANA name, or a :class:`TimeZoneError` a user can act on."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise TimeZoneError(f"unknown time zone {name!r} (expected an IANA name such as Asia/Manila)") from None


def _utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware datetime, got {moment!r}")
    return moment.astimezone(UTC)


# --- value objects --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryWindow:
    """One delivery window: ``start <= t < finish``, both aware datetimes in the site's zone."""

    start: dt.datetime
    finish: dt.datetime

    def contains(self, at: dt.datetime) -> bool:
        """Whether the instant ``at`` (any zone) lies in ``[start, finish)``."""
        moment = _utc(at)
        return _utc(self.start) <= moment < _utc(self.finish)


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One delivery of a task: key ``"once"`` (one-time) or its date ``YYYY-MM-DD``.

    Recurring occurrences span the windows of their date only; the one-time occurrence spans every
    window of every allowed date (a :class:`SpanWindows`, built as it is read). ``windows`` is in
    chronological order.
    """

    key: str
    windows: Sequence[DeliveryWindow]

    @property
    def start(self) -> dt.datetime:
        """When the first window opens."""
        return self.windows[0].start

    @property
    def finish(self) -> dt.datetime:
        """When the last window closes; users not reached by then are expired."""
        return self.windows[-1].finish

    def window_at(self, at: dt.datetime) -> DeliveryWindow | None:
        """The window open at the instant ``at``, if any."""
        moment = _utc(at)
        if isinstance(self.windows, SpanWindows):
            return self.windows.window_at(moment)
        for window in self.windows:
            if _utc(window.start) <= moment < _utc(window.finish):
                return window
        return None

    def is_open(self, at: dt.datetime) -> bool:
        """Whether one of the windows is open at the instant ``at``."""
        return self.window_at(at) is not None

    @property
    def dates(self) -> tuple[dt.date, ...]:
        """The local dates its windows start on, without repeats."""
        if isinstance(self.windows, SpanWindows):
            return self.windows.dates
        return tuple(dict.fromkeys(window.start.date() for window in self.windows))


class SpanWindows(Sequence):
    """The windows of a one-time occurrence: each of its dates' windows, in order, built on demand.

    Every date has the same number of windows (the schedule's), so the n-th window is found by
    arithmetic, and the window open at an instant by a binary search over the dates. Equal to the
    tuple of the same windows.
    """

    __slots__ = ("_dates", "_walls", "_zone")

    def __init__(self, dates: Sequence[dt.date], walls: tuple[tuple[int, int, int, int], ...], zone: ZoneInfo) -> None:
        self._dates = tuple(dates)
        self._walls = walls
        self._zone = zone

    @property
    def dates(self) -> tuple[dt.date, ...]:
        return self._dates

    def _on(self, position: int) -> list[DeliveryWindow]:
        return _windows_on(self._dates[position], self._walls, self._zone)

    def __len__(self) -> int:
        return len(self._dates) * len(self._walls)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return tuple(self)[index]
        size = len(self)
        if index < 0:
            index += size
        if not 0 <= index < size:
            raise IndexError("window index out of range")
        position, offset = divmod(index, len(self._walls))
        return self._on(position)[offset]

    def __iter__(self) -> Iterator[DeliveryWindow]:
        for position in range(len(self._dates)):
            yield from self._on(position)

    def window_at(self, moment: dt.datetime) -> DeliveryWindow | None:
        """The window open at ``moment`` (UTC): only the dates around its local date are built."""
        local = moment.astimezone(self._zone).date()
        position = bisect.bisect_left(self._dates, local - dt.timedelta(days=1))
        while position < len(self._dates) and self._dates[position] <= local + dt.timedelta(days=1):
            for window in self._on(position):
                if _utc(window.start) <= moment < _utc(window.finish):
                    return window
            position += 1
        return None

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SpanWindows):
            return (self._dates, self._walls, self._zone) == (other._dates, other._walls, other._zone) or tuple(
                self
            ) == tuple(other)
        if isinstance(other, Sequence):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"SpanWindows({len(self)} windows on {len(self._dates)} dates)"


@dataclass(frozen=True)
class Preview:
    """The next few occurrences and how many the schedule has in all."""

    upcoming: tuple[Occurrence, ...]
    total: int


# --- wall clock to instant ------------------------------------------------------------------


def _parse_wall(text: str) -> tuple[int, int]:
    hours, _, minutes = text.partition(":")
    return int(hours), int(minutes)


def wall_instant(day: dt.date, hour: int, minute: int, zone: ZoneInfo) -> dt.datetime:
    """The instant a wall-clock time on ``day`` names in ``zone`` (SPEC section 4).

    An ambiguous time (fall back) is its first, earlier instant (``fold=0``). A time that does not
    exist (spring forward) moves forward to the first valid instant, i.e. the transition itself:
    zoneinfo alone would read it with the old offset and land *after* the transition.
    """
    local = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
    back = local.astimezone(UTC).astimezone(zone)
    if back.replace(tzinfo=None, fold=0) == local.replace(tzinfo=None):
        return back
    return _gap_end(local, zone)


def _gap_end(local: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """The transition instant that skipped ``local``'s wall time, to the second.

    In a gap, ``fold=1`` reads the wall time with the offset after the transition (an instant
    before it) and ``fold=0`` with the offset before (an instant after it); the transition lies
    between, and a binary search on whole seconds finds it (tzdata transitions are whole seconds).
    """
    low = int(local.replace(fold=1).timestamp())
    high = -int(-local.replace(fold=0).timestamp() // 1)  # ceil
    if low > high:
        low, high = high, low
    after = dt.datetime.fromtimestamp(high, zone).utcoffset()

    def offset(seconds: int) -> dt.timedelta | None:
        return dt.datetime.fromtimestamp(seconds, zone).utcoffset()

    if offset(low) == after:  # not a gap after all; keep zoneinfo's reading
        return local.astimezone(UTC).astimezone(zone)
    while high - low > 1:
        middle = (low + high) // 2
        if offset(middle) == after:
            high = middle
        else:
            low = middle
    return dt.datetime.fromtimestamp(high, zone)


def _windows_on(day: dt.date, windows: Iterable[tuple[int, int, int, int]], zone: ZoneInfo) -> list[DeliveryWindow]:
    result = [
        DeliveryWindow(wall_instant(day, sh, sm, zone), wall_instant(day, fh, fm, zone))
        for sh, sm, fh, fm in windows
    ]
    if len(result) > 1:
        result.sort(key=lambda window: _utc(window.start))
    return result


def _wall_windows(windows: Iterable[Window]) -> tuple[tuple[int, int, int, int], ...]:
    return tuple((*_parse_wall(window.start), *_parse_wall(window.finish)) for window in windows)


# --- dates ----------------------------------------------------------------------------------


def _allowed_weekdays(schedule: Schedule) -> tuple[int, ...]:
    blocked = {WEEKDAYS.index(day) for day in schedule.do_not_disturb}
    return tuple(day for day in range(7) if day not in blocked)


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day)


def occurrence_dates(schedule: Schedule) -> Iterator[dt.date]:
    """The delivery dates in order (for a one-time task: every allowed date of its range).

    - daily every N: start_date + k*N, counted from start_date across month ends; a date on a
      do-not-disturb weekday is skipped, not moved.
    - weekly: the listed weekdays in weeks 0, N, 2N, ... counted from the week of start_date.
      **Weeks start on Monday** (ISO 8601), so "every 2 weeks" pairs Monday..Sunday weeks.
    - monthly day D: day D of each month, clamped to the month's last day (31 -> Feb 28/29,
      Apr 30); ``last`` is always the last day. A clamped date on a do-not-disturb weekday is
      skipped, not moved.

    The range is inclusive; a finish before the start gives nothing.
    """
    start, finish = schedule.start_date, schedule.finish_date
    if finish < start:
        return iter(())
    allowed = _allowed_weekdays(schedule)
    if not allowed:
        return iter(())
    recurrence = schedule.recurrence
    common = {"dtstart": _midnight(start), "until": _midnight(finish), "cache": False}
    weekday_filter = allowed if len(allowed) < 7 else None

    if isinstance(recurrence, (OneTime, Daily)):
        every = recurrence.every if isinstance(recurrence, Daily) else 1
        # rrule checks `until` only on a match: if no weekday the interval can reach is allowed
        # (every 7 days from a Monday, Mondays blocked) it would scan on to the year 9999.
        reachable = {(start.weekday() + step * every) % 7 for step in range(7)}
        if reachable.isdisjoint(allowed):
            return iter(())
        rule = rrule(DAILY, interval=every, byweekday=weekday_filter, **common)
        return (moment.date() for moment in rule)

    if isinstance(recurrence, Weekly):
        wanted = {WEEKDAYS.index(day) for day in recurrence.days}
        days = tuple(day for day in allowed if day in wanted)
        if not days:
            return iter(())
        rule = rrule(WEEKLY, interval=recurrence.every, byweekday=days, wkst=_MONDAY, **common)
        return (moment.date() for moment in rule)

    if isinstance(recurrence, Monthly):
        day = recurrence.day
        if day == "last":
            rule = rrule(MONTHLY, bymonthday=-1, **common)
        elif day <= 28:
            rule = rrule(MONTHLY, bymonthday=day, **common)
        else:
            # Plain BYMONTHDAY=31 skips short months. Candidates 28..D with BYSETPOS=-1 pick the
            # largest that exists: D itself, or the month's last day when the month is shorter.
            rule = rrule(MONTHLY, bymonthday=tuple(range(28, day + 1)), bysetpos=-1, **common)
        dates = (moment.date() for moment in rule)
        if weekday_filter is None:
            return dates
        allowed_set = frozenset(allowed)
        # Filter afterwards: BYWEEKDAY inside the rule would pick another day of the month.
        return (date for date in dates if date.weekday() in allowed_set)

    raise TypeError(f"unknown recurrence {recurrence!r}")  # pragma: no cover - models forbid it


def _is_once(schedule: Schedule) -> bool:
    return isinstance(schedule.recurrence, OneTime)


def has_occurrences(schedule: Schedule) -> bool:
    """Whether the schedule ever delivers (the ``no-occurrences`` rule). Stops at the first date.

    Runs on every task of ``validate``, so the usual case (the start date itself delivers) is
    answered without building a rule.
    """
    start = schedule.start_date
    if schedule.finish_date < start:
        return False
    recurrence = schedule.recurrence
    weekday = WEEKDAYS[start.weekday()]
    if weekday not in schedule.do_not_disturb and (
        isinstance(recurrence, (OneTime, Daily)) or (isinstance(recurrence, Weekly) and weekday in recurrence.days)
    ):
        return True
    for _ in occurrence_dates(schedule):
        return True
    return False


def count_occurrences(schedule: Schedule) -> int:
    """How many occurrences the schedule has (a one-time task has at most one)."""
    if _is_once(schedule):
        return int(has_occurrences(schedule))
    return sum(1 for _ in occurrence_dates(schedule))


# --- occurrences ----------------------------------------------------------------------------


def _once(schedule: Schedule, zone: ZoneInfo, dates: Iterable[dt.date] | None = None) -> Occurrence | None:
    days = list(occurrence_dates(schedule) if dates is None else dates)
    return Occurrence(ONCE, SpanWindows(days, _wall_windows(schedule.windows), zone)) if days else None


def _recurring(dates: Iterable[dt.date], schedule: Schedule, zone: ZoneInfo) -> Iterator[Occurrence]:
    walls = _wall_windows(schedule.windows)
    for day in dates:
        yield Occurrence(day.isoformat(), tuple(_windows_on(day, walls, zone)))


def occurrences(schedule: Schedule, timezone: str) -> Iterator[Occurrence]:
    """Every occurrence in chronological order, built lazily."""
    zone = site_zone(timezone)
    if _is_once(schedule):
        once = _once(schedule, zone)
        return iter(() if once is None else (once,))
    return _recurring(occurrence_dates(schedule), schedule, zone)


def find_occurrence(schedule: Schedule, timezone: str, key: str) -> Occurrence | None:
    """The occurrence with this key (``once`` or ``YYYY-MM-DD``), or None if the schedule has none."""
    zone = site_zone(timezone)
    if _is_once(schedule):
        return _once(schedule, zone) if key == ONCE else None
    try:
        wanted = dt.date.fromisoformat(key)
    except (TypeError, ValueError):
        return None
    if len(key) != 10 or not schedule.start_date <= wanted <= schedule.finish_date:
        return None
    for day in occurrence_dates(schedule):
        if day >= wanted:
            return next(_recurring((day,), schedule, zone)) if day == wanted else None
    return None


def occurrences_between(
    schedule: Schedule, timezone: str, start: dt.date | None, finish: dt.date | None
) -> Iterator[Occurrence]:
    """Occurrences with a window on a date in ``[start, finish]`` (None: unbounded), in order.

    A one-time task's single occurrence is included whole when any of its dates is in the range.
    """
    zone = site_zone(timezone)
    dates = occurrence_dates(schedule)
    if start is not None:
        dates = itertools.dropwhile(lambda day: day < start, dates)
    if finish is not None:
        dates = itertools.takewhile(lambda day: day <= finish, dates)
    if _is_once(schedule):
        if next(dates, None) is None:
            return iter(())
        once = _once(schedule, zone)
        return iter(() if once is None else (once,))
    return _recurring(dates, schedule, zone)


def _finishing_after(schedule: Schedule, zone: ZoneInfo, after: dt.datetime) -> Iterator[Occurrence]:
    """Occurrences whose last window closes after ``after``, skipping past dates without building them."""
    moment = _utc(after)
    if _is_once(schedule):
        once = _once(schedule, zone)
        if once is not None and _utc(once.finish) > moment:
            yield once
        return
    # A date's windows close on that date (or the next one, after a midnight DST gap), so dates
    # two days before the local date of `after` cannot qualify.
    horizon = moment.astimezone(zone).date() - dt.timedelta(days=2)
    dates = itertools.dropwhile(lambda day: day < horizon, occurrence_dates(schedule))
    for occurrence in _recurring(dates, schedule, zone):
        if _utc(occurrence.finish) > moment:
            yield occurrence


def preview(schedule: Schedule, timezone: str, after: dt.datetime, n: int = 5) -> Preview:
    """The next ``n`` occurrences still open or to come after ``after``, and the schedule's total."""
    zone = site_zone(timezone)
    upcoming = tuple(itertools.islice(_finishing_after(schedule, zone, after), max(n, 0)))
    return Preview(upcoming=upcoming, total=count_occurrences(schedule))


def due_occurrences(
    schedule: Schedule, timezone: str, at: dt.datetime, *, since: dt.datetime | None = None
) -> Iterator[Occurrence]:
    """Occurrences the executor has to look at, at instant ``at``: those whose first window has
    opened by ``at`` (``start <= at``), in chronological order.

    ``since`` (optional) drops occurrences whose last window closed at or before it, so a poll loop
    that remembers its previous poll time skips history. An occurrence yielded here is either open
    (``occurrence.is_open(at)``), between two of its windows, or over (``finish <= at``: its
    unreached users are to be recorded as expired).
    """
    zone = site_zone(timezone)
    moment = _utc(at)
    candidates = occurrences(schedule, timezone) if since is None else _finishing_after(schedule, zone, since)
    for occurrence in candidates:
        if _utc(occurrence.start) > moment:
            return
        yield occurrence
