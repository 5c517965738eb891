"""Occurrences for people and programs: JSON (SPEC section 4), iCalendar, and a terminal table.

``icalendar`` and ``rich`` are imported inside the functions that need them, so importing this
module costs nothing on the ``validate`` path.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from engine.schedule.occurrences import ONCE, Occurrence, site_zone
from engine.schedule.vtimezone import vtimezone

if TYPE_CHECKING:  # pragma: no cover
    from rich.table import Table

    from engine.config.models import Task

PRODID = "-//campaigns-as-code//schedule//EN"
UID_DOMAIN = "campaigns-as-code"


def to_json(task_id: str, timezone: str, occurrences: Iterable[Occurrence]) -> dict[str, Any]:
    """``{"task", "timezone", "occurrences": [{"key", "windows": [{"start", "finish"}]}]}``.

    Datetimes are ISO 8601 in the site's zone with their UTC offset, e.g.
    ``2026-12-01T09:00:00+08:00``; the offset is what makes DST days unambiguous.
    """
    return {
        "task": task_id,
        "timezone": timezone,
        "occurrences": [
            {
                "key": occurrence.key,
                "windows": [
                    {"start": window.start.isoformat(), "finish": window.finish.isoformat()}
                    for window in occurrence.windows
                ],
            }
            for occurrence in occurrences
        ],
    }


def event_uid(task_id: str, key: str, index: int) -> str:
    """Stable across runs, so re-importing a calendar updates events instead of duplicating them."""
    return f"{task_id}/{key}/{index}@{UID_DOMAIN}"


def unambiguous(moment: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """``moment`` on the site's wall clock, or in UTC when that wall-clock time happens twice.

    A local time in the hour a zone falls back is ambiguous: RFC 5545 says it means the first
    one, but vobject takes the second. UTC says which one without relying on either reading.
    """
    local = moment.astimezone(zone)
    if local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset():
        return moment.astimezone(dt.timezone.utc)
    return local


def to_ics(
    task_id: str,
    task: Task,
    timezone: str,
    occurrences: Iterable[Occurrence],
    *,
    stamp: dt.datetime | None = None,
) -> bytes:
    """An RFC 5545 calendar with one VEVENT per delivery window.

    Times carry ``TZID`` of the site's zone with a matching VTIMEZONE (so a marketer abroad still
    sees the site's wall clock in the event details); a time the zone's clock shows twice, when it
    falls back, is written in UTC (:func:`unambiguous`). The VTIMEZONE states the zone's rule as
    RRULEs (:mod:`engine.schedule.vtimezone`), the one form icalendar, vobject, ical.js and
    node-ical all read alike. It is written even when no window is in range, so an empty range
    is still a valid calendar (RFC 5545 wants at least one component). ``stamp`` (DTSTAMP,
    default: now) is a parameter so the output can be reproduced.
    """
    from icalendar import Calendar, Event

    zone = site_zone(timezone)
    stamp = (stamp or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc).replace(microsecond=0)
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", f"{task.name} ({task_id})")
    calendar.add("x-wr-timezone", timezone)
    events = []
    for occurrence in occurrences:
        total = len(occurrence.windows)
        for index, window in enumerate(occurrence.windows):
            event = Event()
            event.add("uid", event_uid(task_id, occurrence.key, index))
            event.add("dtstamp", stamp)
            event.add("dtstart", unambiguous(window.start, zone))
            event.add("dtend", unambiguous(window.finish, zone))
            part = f", window {index + 1} of {total}" if total > 1 else ""
            event.add("summary", f"{task.name} [{task.channel}]")
            event.add(
                "description",
                f"Task {task_id} ({task.channel}) on site {task.site}: occurrence {occurrence.key}{part}.\n"
                f"Delivery window, {timezone} wall clock: "
                f"{window.start.astimezone(zone):%Y-%m-%d %H:%M} - {window.finish.astimezone(zone):%H:%M}.",
            )
            event.add("categories", [task.channel])
            event.add("transp", "TRANSPARENT")
            events.append((window.start.astimezone(zone), window.finish.astimezone(zone), event))
    if events:
        first, last = min(e[0] for e in events).date(), max(e[1] for e in events).date()
    else:
        first, last = task.schedule.start_date, task.schedule.finish_date
    calendar.add_component(vtimezone(timezone, first, last))
    for _, _, event in events:
        calendar.add_component(event)
    return calendar.to_ical()


def _clock(moment: dt.datetime, zone, day: dt.date) -> str:
    local = moment.astimezone(zone)
    text = f"{local:%H:%M}"
    if local.date() != day:  # a DST gap at midnight pushed it into the next day
        text += f" ({local:%b %d})"
    return text


def render_table(task_id: str, timezone: str, occurrences: Iterable[Occurrence]) -> Table:
    """A rich table: one row per occurrence date, with its windows in the site's wall clock.

    A one-time task's single occurrence spans several dates: it gets a row per date (key on the
    first) and a Date column; for recurring tasks the key already is the date. A window whose
    wall-clock time was moved by a DST change shows the time it really opens.
    """
    from rich.table import Table

    zone = site_zone(timezone)
    found = list(occurrences)
    spanning = any(occurrence.key == ONCE for occurrence in found)
    table = Table(title=f"Occurrences of {task_id}")
    table.add_column("Occurrence", no_wrap=True)
    if spanning:
        table.add_column("Date", no_wrap=True)
    table.add_column("Weekday", no_wrap=True)
    table.add_column(f"Windows ({timezone})")
    for occurrence in found:
        by_day: dict[dt.date, list[str]] = {}
        for window in occurrence.windows:
            day = window.start.astimezone(zone).date()
            by_day.setdefault(day, []).append(f"{_clock(window.start, zone, day)}–{_clock(window.finish, zone, day)}")
        for row, (day, spans) in enumerate(by_day.items()):
            key = occurrence.key if row == 0 else ""
            cells = (key, day.isoformat()) if spanning else (key,)
            table.add_row(*cells, f"{day:%A}", ", ".join(spans))
    table.caption = f"{len(found)} occurrence{'s' if len(found) != 1 else ''}"
    return table
