"""JSON, iCalendar and table renderings of occurrences agree with each other and with SPEC."""

from __future__ import annotations

import datetime as dt
import io
from zoneinfo import ZoneInfo

import icalendar
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from schedule_oracle import schedule, schedules

from engine.config.models import Task
from engine.schedule.occurrences import occurrences
from engine.schedule.render import render_table, to_ics, to_json

UTC = dt.timezone.utc


def task_with(schedule_, name="Flash sale push", channel="push") -> Task:
    return Task(
        name=name,
        site="ph",
        channel=channel,
        schedule=schedule_,
        audiences=["everyone"],
        creatives=["flash-a"],
    )


def windows_from_json(document: dict) -> list[tuple[str, dt.datetime, dt.datetime]]:
    return [
        (occurrence["key"], dt.datetime.fromisoformat(w["start"]), dt.datetime.fromisoformat(w["finish"]))
        for occurrence in document["occurrences"]
        for w in occurrence["windows"]
    ]


def windows_from_ics(data: bytes) -> list[tuple[str, dt.datetime, dt.datetime]]:
    calendar = icalendar.Calendar.from_ical(data)
    events = list(calendar.walk("VEVENT"))
    return [
        (str(event["uid"]).split("/")[1], event.decoded("dtstart"), event.decoded("dtend"))
        for event in events
    ]


def test_json_has_the_spec_shape_with_utc_offsets():
    daily = schedule("2026-12-01", "2026-12-02", {"type": "daily"})
    document = to_json("flash-sale", "Asia/Manila", occurrences(daily, "Asia/Manila"))
    assert set(document) == {"task", "timezone", "occurrences"}
    assert document["task"] == "flash-sale" and document["timezone"] == "Asia/Manila"
    assert [o["key"] for o in document["occurrences"]] == ["2026-12-01", "2026-12-02"]
    first = document["occurrences"][0]["windows"][0]
    assert set(first) == {"start", "finish"}
    assert first["start"] == "2026-12-01T09:00:00+08:00"  # SPEC's own example format
    assert first["finish"] == "2026-12-01T11:30:00+08:00"


def test_json_offsets_change_across_a_dst_transition():
    daily = schedule("2026-03-07", "2026-03-09", {"type": "daily"}, windows=[{"start": "02:30", "finish": "05:00"}])
    document = to_json("t", "America/New_York", occurrences(daily, "America/New_York"))
    starts = [o["windows"][0]["start"] for o in document["occurrences"]]
    assert [s[-6:] for s in starts] == ["-05:00", "-04:00", "-04:00"]
    assert dt.datetime.fromisoformat(starts[1]).astimezone(UTC) == dt.datetime(2026, 3, 8, 7, 0, tzinfo=UTC)


@settings(max_examples=60, deadline=None)
@given(
    schedules(max_days=60, allow_reversed=False),
    st.sampled_from(["Asia/Manila", "America/New_York", "Europe/London", "Australia/Lord_Howe"]),
)
def test_ics_events_are_the_json_windows(schedule_, zone):
    found = list(occurrences(schedule_, zone))
    document = to_json("flash-sale", zone, found)
    data = to_ics("flash-sale", task_with(schedule_), zone, found)
    from_json = windows_from_json(document)
    from_ics = windows_from_ics(data)
    assert [key for key, _, _ in from_ics] == [key for key, _, _ in from_json]
    # Same instants (compared in UTC), and the same wall clock in the site's zone.
    assert [(s.astimezone(UTC), f.astimezone(UTC)) for _, s, f in from_ics] == [
        (s.astimezone(UTC), f.astimezone(UTC)) for _, s, f in from_json
    ]
    # On the site's wall clock, except a time the clock shows twice (fall-back hour): UTC says which.
    for (_, written, _), (_, expected, _) in zip(from_ics, from_json):
        local = expected.astimezone(ZoneInfo(zone))
        if local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset():
            assert written.utcoffset() == dt.timedelta(0)
        else:
            assert written.replace(tzinfo=None) == expected.replace(tzinfo=None)


def test_ics_is_a_calendar_a_marketer_can_open():
    once = schedule(
        "2026-12-01",
        "2026-12-02",
        {"type": "one_time"},
        windows=[{"start": "09:00", "finish": "11:30"}, {"start": "18:00", "finish": "21:00"}],
    )
    found = list(occurrences(once, "Asia/Manila"))
    data = to_ics("flash-sale", task_with(once, name="Flash sale 🎄", channel="sms"), "Asia/Manila", found)
    calendar = icalendar.Calendar.from_ical(data)
    assert str(calendar["version"]) == "2.0" and calendar.get("prodid")
    events = list(calendar.walk("VEVENT"))
    assert len(events) == sum(len(o.windows) for o in found) == 4
    for event in events:
        assert "Flash sale 🎄" in str(event["summary"]) and "sms" in str(event["summary"])
        assert event.decoded("dtstamp").tzinfo is not None
    uids = [str(event["uid"]) for event in events]
    assert len(set(uids)) == len(uids)
    tzids = {event["dtstart"].params.get("TZID") for event in events}
    assert tzids in ({"Asia/Manila"}, {None})  # site zone, or UTC when VTIMEZONE is unavailable
    if tzids == {"Asia/Manila"}:
        assert [str(tz["tzid"]) for tz in calendar.walk("VTIMEZONE")] == ["Asia/Manila"]
    assert data.startswith(b"BEGIN:VCALENDAR\r\n") and data.rstrip().endswith(b"END:VCALENDAR")


def test_ics_uids_are_stable_between_runs_and_narrower_ranges():
    daily = schedule("2026-12-01", "2026-12-05", {"type": "daily"})
    task = task_with(daily)
    everything = list(occurrences(daily, "Asia/Manila"))

    def uids(found, stamp):
        calendar = icalendar.Calendar.from_ical(to_ics("flash-sale", task, "Asia/Manila", found, stamp=stamp))
        return {event.decoded("dtstart"): str(event["uid"]) for event in calendar.walk("VEVENT")}

    today = dt.datetime(2026, 11, 1, tzinfo=UTC)
    later = dt.datetime(2026, 11, 20, 8, 30, tzinfo=UTC)
    full, again, part = uids(everything, today), uids(everything, later), uids(everything[2:], later)
    assert full == again
    assert part.items() <= full.items()


def test_table_lists_each_date_with_its_local_windows():
    daily = schedule(
        "2026-03-07",
        "2026-03-09",
        {"type": "daily"},
        windows=[{"start": "02:30", "finish": "05:00"}, {"start": "18:00", "finish": "21:00"}],
    )
    found = list(occurrences(daily, "America/New_York"))
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(render_table("flash-sale", "America/New_York", found))
    text = console.file.getvalue()
    for occurrence in found:
        line = next(line for line in text.splitlines() if occurrence.key in line)
        day = dt.date.fromisoformat(occurrence.key)
        assert f"{day:%A}" in line
        for window in occurrence.windows:
            assert f"{window.start:%H:%M}–{window.finish:%H:%M}" in line
    assert "03:00–05:00" in text  # the gap day shows when the window really opens
    assert f"{len(found)} occurrences" in text


def test_table_of_a_one_time_task_has_a_row_per_date():
    once = schedule("2026-12-05", "2026-12-08", {"type": "one_time"}, do_not_disturb=["monday"])
    (occurrence,) = occurrences(once, "Asia/Manila")
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(render_table("t", "Asia/Manila", [occurrence]))
    rows = [line for line in console.file.getvalue().splitlines() if "09:00–11:30" in line]
    assert len(rows) == len(occurrence.dates) == 3  # 5, 6 and 8 December; the 7th is a Monday
    assert "once" in rows[0] and "once" not in rows[1]
    assert all(day.isoformat() in row for day, row in zip(occurrence.dates, rows))
