"""The VTIMEZONE the calendar carries gives, read back by icalendar and vobject, the UTC offset
``zoneinfo`` gives, for every zone, at every instant of the span it was made for."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import icalendar
import pytest
import vobject
from hypothesis import given, settings
from hypothesis import strategies as st
from test_calendar_clients import forget_vobject_zones

from engine.schedule.vtimezone import MonthRule, actual_transitions, current_rule, parse_posix, vtimezone

UTC = dt.timezone.utc
ZONES = sorted(zone for zone in zoneinfo.available_timezones() if "/" in zone and not zone.startswith(("Etc/", "posix/", "right/")))
H = dt.timedelta(hours=1)


def read_back(component: icalendar.Timezone) -> list[dt.tzinfo]:
    """The zone as icalendar and as vobject understand the component."""
    text = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n" + component.to_ical().decode() + "END:VCALENDAR\r\n"
    forget_vobject_zones()
    by_vobject = vobject.readOne(text).vtimezone.gettzinfo()
    return [component.to_tz(), by_vobject]


def probes(zone: zoneinfo.ZoneInfo, first: dt.date, last: dt.date) -> list[dt.datetime]:
    """Instants either side of each change the zone makes, and one a fortnight in between."""
    moments = []
    for change in actual_transitions(zone, first, last):
        moments += [change.at - H, change.at - dt.timedelta(seconds=1), change.at, change.at + H]
    day = dt.datetime.combine(first, dt.time(12), UTC)
    while day.date() <= last:
        moments.append(day)
        day += dt.timedelta(days=14)
    return moments


def repeated(local: dt.datetime) -> bool:
    """A wall-clock time the zone shows twice (the hour it falls back)."""
    return local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset()


def assert_offsets_agree(key: str, first: dt.date, last: dt.date, readers=("icalendar", "vobject")) -> None:
    zone = zoneinfo.ZoneInfo(key)
    component = vtimezone(key, first, last)
    for reader, tz in zip(("icalendar", "vobject"), read_back(component)):
        if reader not in readers:
            continue
        moments = probes(zone, first, last)
        if reader == "vobject":  # see test_vobject_reads_the_repeated_hour_as_its_second_pass
            moments = [moment for moment in moments if not repeated(moment.astimezone(zone))]
        wrong = [
            (moment, moment.astimezone(zone).utcoffset(), moment.astimezone(tz).utcoffset())
            for moment in moments
            if moment.astimezone(zone).utcoffset() != moment.astimezone(tz).utcoffset()
        ]
        assert not wrong, f"{reader} reads {key} {first}..{last} wrongly at {wrong[:3]}"


@pytest.mark.parametrize(
    "key", ["America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Shanghai", "Asia/Manila", "Europe/Dublin"]
)
def test_site_zones_use_the_current_rule_as_rrules(key):
    component = vtimezone(key, dt.date(2026, 12, 1), dt.date(2027, 12, 31))
    assert not any("RDATE" in part for part in component.subcomponents)
    assert all("RRULE" in part for part in component.subcomponents) or len(component.subcomponents) == 1
    assert_offsets_agree(key, dt.date(2026, 12, 1), dt.date(2027, 12, 31))


def test_new_york_rule_is_second_sunday_of_march_and_first_of_november():
    component = vtimezone("America/New_York", dt.date(2026, 3, 1), dt.date(2026, 11, 30))
    rules = {part.name: part["RRULE"].to_ical() for part in component.subcomponents}
    assert rules == {"DAYLIGHT": b"FREQ=YEARLY;BYDAY=2SU;BYMONTH=3", "STANDARD": b"FREQ=YEARLY;BYDAY=1SU;BYMONTH=11"}
    starts = {part.name: part.decoded("dtstart") for part in component.subcomponents}
    assert starts["DAYLIGHT"] == dt.datetime(2025, 3, 9, 2, 0)  # the wall clock before the change (TZOFFSETFROM)


def test_a_zone_without_dst_is_one_standard():
    component = vtimezone("Asia/Shanghai", dt.date(2026, 1, 1), dt.date(2026, 12, 31))
    (only,) = component.subcomponents
    assert only.name == "STANDARD" and only.decoded("tzoffsetto") == dt.timedelta(hours=8)


def test_years_under_an_older_rule_get_one_component_per_change():
    # The US moved its DST dates in 2007: 2005-2006 changes cannot come from today's RRULE.
    component = vtimezone("America/New_York", dt.date(2006, 1, 1), dt.date(2008, 12, 31))
    assert any("RRULE" not in part and part.name == "DAYLIGHT" for part in component.subcomponents)
    assert_offsets_agree("America/New_York", dt.date(2006, 1, 1), dt.date(2008, 12, 31))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("EST5EDT,M3.2.0,M11.1.0", (dt.timedelta(hours=-5), dt.timedelta(hours=-4))),
        ("<+1030>-10:30<+11>-11,M10.1.0,M4.1.0", (dt.timedelta(hours=10, minutes=30), dt.timedelta(hours=11))),
        ("GMT0BST,M3.5.0/1,M10.5.0", (dt.timedelta(0), dt.timedelta(hours=1))),
        ("CST-8", (dt.timedelta(hours=8), None)),
    ],
)
def test_posix_strings_parse(text, expected):
    rule = parse_posix(text)
    assert rule is not None and (rule.std, rule.dst) == expected


@pytest.mark.parametrize("text", ["IST-2IDT,M3.4.4/26,M10.5.0", "<-02>2<-01>,M3.5.0/-1,M10.5.0/0", "XXX3YYY,J60,J300", "junk"])
def test_rules_an_rrule_cannot_say_are_refused(text):
    assert parse_posix(text) is None


def test_week_five_is_the_last_weekday_of_the_month():
    last_sunday = MonthRule(3, 5, 0, 2 * H)
    assert [last_sunday.day(year) for year in (2026, 2027)] == [dt.date(2026, 3, 29), dt.date(2027, 3, 28)]


def test_the_rule_is_read_from_the_zone_file():
    assert current_rule("Europe/London") == parse_posix("GMT0BST,M3.5.0/1,M10.5.0")


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(ZONES), st.integers(1995, 2036), st.integers(0, 3))
def test_every_zone_reads_back_in_icalendar_as_zoneinfo_says(key, year, years):
    assert_offsets_agree(key, dt.date(year, 1, 1), dt.date(year + years, 12, 31), readers=("icalendar",))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(ZONES), st.integers(2026, 2036), st.integers(0, 3))
def test_every_zone_reads_back_in_vobject_as_zoneinfo_says(key, year, years):
    """From 2026 on (schedules are made for the future), except inside the hour a zone falls back.

    vobject hands VTIMEZONE to dateutil, whose model is a standard offset plus daylight saving: in
    a repeated hour after a change that is not "daylight saving ends" (a zone moving for good, as
    Asia/Almaty did in 2024) it takes the second pass; events never name such a time on the wall
    clock, the calendar writes them in UTC. Some past one-off changes do not fit its model at all
    (Pacific/Apia skipping 30 December 2011, Argentina's 2007 DST start after a name-only
    change, America/Nuuk's 2023-2024 move): a sweep of every zone over 2026-2040 finds none."""
    assert_offsets_agree(key, dt.date(year, 1, 1), dt.date(year + years, 12, 31), readers=("vobject",))


def test_vobject_reads_the_repeated_hour_as_its_second_pass():
    """Why the vobject check leaves the repeated hour out, and why events there are in UTC."""
    zone, tz = zoneinfo.ZoneInfo("Asia/Almaty"), read_back(vtimezone("Asia/Almaty", dt.date(2024, 1, 1), dt.date(2024, 12, 31)))
    before = dt.datetime(2024, 2, 29, 17, 30, tzinfo=UTC)  # 23:30 at +06, half an hour before the move to +05
    assert repeated(before.astimezone(zone))
    assert before.astimezone(tz[0]).utcoffset() == before.astimezone(zone).utcoffset() == 6 * H  # icalendar
    assert before.astimezone(tz[1]).utcoffset() == 5 * H  # vobject: dateutil's reading
