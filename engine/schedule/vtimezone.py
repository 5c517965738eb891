"""VTIMEZONE components every calendar client reads alike.

icalendar's ``add_missing_timezones`` lists each transition as an RDATE; ical.js misreads that
form (a New York calendar showed half its windows an hour off). This module writes the form all
clients implement: one STANDARD and one DAYLIGHT component whose RRULE is the zone's *current*
rule, i.e. the POSIX TZ string at the end of the zone's TZif file (``EST5EDT,M3.2.0,M11.1.0``),
read from the same file ``zoneinfo`` uses. A zone without DST gets a single STANDARD.

The rule is checked against ``zoneinfo`` over the whole span the calendar covers. Years in which
the zone did something else (an older rule, a one-off change) get one component per transition
(DTSTART only, still no RDATE); so does a rule an RRULE cannot say (a transition at 24:00 or later,
Julian days).

Labels follow what dateutil (vobject's reader) assumes, as the others ignore them: DAYLIGHT is the
larger offset of the rule (also where tzdata calls winter time the daylight one, Europe/Dublin),
and an explicit change is DAYLIGHT when it moves the clock forward by up to two hours or only
turns daylight saving on; changes of name or daylight flag alone are written too, so the two kinds
alternate as dateutil expects.
"""

from __future__ import annotations

import datetime as dt
import importlib.resources
import os
import re
import zoneinfo
from dataclasses import dataclass
from typing import Any

UTC = dt.timezone.utc
_HOUR = dt.timedelta(hours=1)
_DAYS = ("SU", "MO", "TU", "WE", "TH", "FR", "SA")

# std offset [dst [offset] [,rule,rule]]; names are letters or <...>; offsets are west-positive.
_NAME = r"(?:<[^>]+>|[A-Za-z]{3,})"
_OFFSET = r"[+-]?\d{1,3}(?::\d{1,2}){0,2}"
_TZ = re.compile(rf"^({_NAME})({_OFFSET})(?:({_NAME})({_OFFSET})?(?:,([^,]+),([^,]+))?)?$")
_MONTH_RULE = re.compile(r"^M(\d{1,2})\.([1-5])\.([0-6])(?:/(" + _OFFSET + r"))?$")


@dataclass(frozen=True)
class Transition:
    """A change of UTC offset: the instant, and the offsets before and after it."""

    at: dt.datetime  # UTC
    before: dt.timedelta
    after: dt.timedelta
    name: str
    daylight: bool = False  # what zoneinfo says (dst() != 0) after the change


@dataclass(frozen=True)
class MonthRule:
    """``Mm.w.d/time``: weekday ``d`` (0 = Sunday) of week ``w`` (5 = last) of month ``m``."""

    month: int
    week: int
    weekday: int
    time: dt.timedelta  # wall clock before the change

    def day(self, year: int) -> dt.date:
        first = dt.date(year, self.month, 1)
        shift = (self.weekday - (first.isoweekday() % 7)) % 7
        day = first + dt.timedelta(days=shift + 7 * (self.week - 1))
        while day.month != self.month:  # week 5 means the last one
            day -= dt.timedelta(days=7)
        return day

    def rrule(self) -> dict[str, Any]:
        week = -1 if self.week == 5 else self.week
        return {"freq": "yearly", "bymonth": self.month, "byday": f"{week}{_DAYS[self.weekday]}"}


@dataclass(frozen=True)
class Rule:
    """A zone's current rule: a fixed offset, or a standard and a daylight offset with their dates."""

    std_name: str
    std: dt.timedelta
    dst_name: str | None = None
    dst: dt.timedelta | None = None
    to_dst: MonthRule | None = None
    to_std: MonthRule | None = None

    def transitions(self, year: int) -> list[Transition]:
        """The changes this rule makes in ``year``, in time order."""
        if self.to_dst is None or self.to_std is None or self.dst is None or self.dst_name is None:
            return []
        found = [
            Transition(_utc(self.to_dst, year, self.std), self.std, self.dst, self.dst_name, True),
            Transition(_utc(self.to_std, year, self.dst), self.dst, self.std, self.std_name, False),
        ]
        return sorted(found, key=lambda change: change.at)


def _utc(rule: MonthRule, year: int, offset: dt.timedelta) -> dt.datetime:
    local = dt.datetime.combine(rule.day(year), dt.time()) + rule.time
    return (local - offset).replace(tzinfo=UTC)


def _duration(text: str) -> dt.timedelta:
    sign = -1 if text.startswith("-") else 1
    parts = [int(part) for part in text.lstrip("+-").split(":")] + [0, 0]
    return sign * dt.timedelta(hours=parts[0], minutes=parts[1], seconds=parts[2])


def parse_posix(text: str) -> Rule | None:
    """The rule of a POSIX TZ string, or None when an RRULE cannot express it."""
    match = _TZ.match(text.strip())
    if not match:
        return None
    std_name, std_text, dst_name, dst_text, start, end = match.groups()
    std = -_duration(std_text)
    if dst_name is None:
        return Rule(std_name.strip("<>"), std)
    dst = -_duration(dst_text) if dst_text else std + dt.timedelta(hours=1)
    if start is None or end is None:
        return None  # DST with the POSIX default dates: no zone in tzdata writes this
    rules = []
    for part in (start, end):
        found = _MONTH_RULE.match(part)
        if not found:
            return None  # Julian-day forms
        month, week, weekday, time = found.groups()
        at = _duration(time) if time else dt.timedelta(hours=2)
        if not dt.timedelta(0) <= at < dt.timedelta(hours=24):
            return None  # a change at 24:00 or later falls on another weekday than BYDAY says
        rules.append(MonthRule(int(month), int(week), int(weekday), at))
    return Rule(std_name.strip("<>"), std, dst_name.strip("<>"), dst, rules[0], rules[1])


def _tzif(key: str) -> bytes | None:
    """The TZif file ``zoneinfo`` reads for ``key``: the first on TZPATH, else the tzdata package."""
    for folder in zoneinfo.TZPATH:
        path = os.path.join(folder, key)
        if os.path.isfile(path):
            with open(path, "rb") as handle:
                return handle.read()
    try:
        return importlib.resources.files("tzdata.zoneinfo").joinpath(*key.split("/")).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        return None


def current_rule(key: str) -> Rule | None:
    """The POSIX footer of a version 2+ TZif file, parsed; None if absent or inexpressible."""
    data = _tzif(key)
    if not data or not data.startswith(b"TZif") or data[4:5] < b"2" or not data.endswith(b"\n"):
        return None
    footer = data[:-1].rsplit(b"\n", 1)[-1].decode("ascii", "replace")
    return parse_posix(footer) if footer else None


def _state(zone: zoneinfo.ZoneInfo, moment: dt.datetime) -> tuple[Any, Any, Any]:
    local = moment.astimezone(zone)
    return local.utcoffset(), local.dst(), local.tzname()


def actual_transitions(zone: zoneinfo.ZoneInfo, first: dt.date, last: dt.date) -> list[Transition]:
    """Every change ``zone`` makes between two dates, to the second: of UTC offset, and also of
    name or daylight flag alone (CDT to EST at the same offset), so that STANDARD and DAYLIGHT
    components alternate as readers such as vobject expect."""
    found = []
    moment = dt.datetime.combine(first, dt.time(), UTC) - dt.timedelta(days=1)
    end = dt.datetime.combine(last, dt.time(), UTC) + dt.timedelta(days=2)
    step = dt.timedelta(hours=12)
    state = _state(zone, moment)
    while moment < end:
        following = moment + step
        after = _state(zone, following)
        if after != state:
            low, high = moment, following
            while high - low > dt.timedelta(seconds=1):
                middle = low + (high - low) / 2
                if _state(zone, middle) == state:
                    low = middle
                else:
                    high = middle
            at = high.replace(microsecond=0)
            found.append(Transition(at, state[0], after[0], after[2] or "", bool(after[1])))
            state = after
        moment = following
    return [change for change in found if first <= change.at.date() <= last]


def _offset_name(offset: dt.timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


def _component(change: Transition, rrule: dict[str, Any] | None, daylight: bool):
    from icalendar import TimezoneDaylight, TimezoneStandard

    component = TimezoneDaylight() if daylight else TimezoneStandard()
    component.add("dtstart", (change.at + change.before).replace(tzinfo=None))
    component.add("tzoffsetfrom", change.before)
    component.add("tzoffsetto", change.after)
    component.add("tzname", change.name or _offset_name(change.after))
    if rrule is not None:
        component.add("rrule", rrule)
    return component


def vtimezone(key: str, first: dt.date, last: dt.date):
    """An icalendar ``Timezone`` for ``key`` that is right for every instant from ``first`` to ``last``.

    The span is widened to whole years, one more each side, so the zone's components begin
    before the first event.
    """
    from icalendar import Timezone

    zone = zoneinfo.ZoneInfo(key)
    begin, end = dt.date(first.year - 1, 1, 1), dt.date(last.year + 1, 12, 31)
    actual = actual_transitions(zone, begin, end)
    rule = current_rule(key)
    since = _rule_holds_since(rule, actual, begin.year, end.year) if rule is not None else None
    recurring = rule.transitions(since) if rule is not None and since is not None else []
    explicit = [change for change in actual if since is None or change.at.year < since]

    timezone = Timezone()
    timezone.add("tzid", key)
    if explicit or not recurring:  # what holds from the start of the span until its first change
        opening = dt.datetime.combine(begin, dt.time(), UTC)
        offset, saving, name = _state(zone, opening)
        steady = Transition(opening, offset or dt.timedelta(0), offset or dt.timedelta(0), name or "", bool(saving))
        timezone.add_component(_component(steady, None, False))
    # DAYLIGHT is the component with the larger offset, also where tzdata calls winter time the
    # daylight one (Europe/Dublin): vobject computes a UTC instant's wall clock assuming that.
    for change in explicit:
        step = change.after - change.before
        summer = dt.timedelta(0) < step <= 2 * _HOUR or (step == dt.timedelta(0) and change.daylight)
        timezone.add_component(_component(change, None, summer))
    for change in recurring:
        assert rule is not None and rule.to_dst is not None and rule.to_std is not None
        which = rule.to_dst if change.daylight else rule.to_std
        summer = change.after == max(other.after for other in recurring)
        timezone.add_component(_component(change, which.rrule(), summer))
    return timezone


def _rule_holds_since(rule: Rule, actual: list[Transition], first_year: int, last_year: int) -> int | None:
    """The earliest year from which, up to ``last_year``, the zone changes exactly as ``rule`` says."""
    by_year: dict[int, list[tuple[dt.datetime, dt.timedelta, bool]]] = {}
    for change in actual:
        by_year.setdefault(change.at.year, []).append((change.at, change.after, change.daylight))
    since = None
    for year in range(last_year, first_year - 1, -1):
        predicted = [(change.at, change.after, change.daylight) for change in rule.transitions(year)]
        if predicted != by_year.get(year, []):
            break
        since = year
    return since
