"""``schedule --format ics`` reads the same in every calendar client: icalendar and vobject here,
ical.js and node-ical through node. Each event's start and end must be the instant
``--format json`` gives for the same window (a New York calendar once showed 7 of 15 windows an
hour off in ical.js, because of an RDATE-style VTIMEZONE)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from pathlib import Path

import icalendar
import pytest
import vobject
from click.testing import CliRunner
from repos import PROJECT, example_repo
from schedule_oracle import schedule

from engine.cli import cli
from engine.config.models import Task
from engine.schedule.occurrences import occurrences
from engine.schedule.render import to_ics, to_json

UTC = dt.timezone.utc
HERE = Path(__file__).resolve().parent
NODE_READER = HERE / "node" / "read_ics.mjs"
NPM_PACKAGES = ["ical.js@>=2.1", "node-ical@>=0.20"]
EXAMPLE_TASKS = sorted(path.stem for path in (PROJECT / "campaigns").glob("*/*.yaml") if path.name != "campaign.yaml")

# Windows that open before, inside and after the 01:00-03:00 hours where zones change offset.
EDGE_WINDOWS = [{"start": "01:30", "finish": "03:30"}, {"start": "09:00", "finish": "11:30"}, {"start": "18:00", "finish": "21:00"}]
ZONE_CASES = {
    # both 2026 changes and the March 2027 one, 15+ windows each side of each change
    "America/New_York": ("2026-02-20", "2027-03-31", {"type": "weekly", "days": ["sunday", "wednesday"]}),
    "Asia/Shanghai": ("2026-12-01", "2027-01-31", {"type": "daily"}),
    "Europe/London": ("2026-03-20", "2026-11-05", {"type": "weekly", "days": ["sunday"]}),
    "Australia/Lord_Howe": ("2026-03-25", "2026-10-20", {"type": "weekly", "days": ["sunday", "saturday"]}),
}

Windows = list[tuple[str, dt.datetime, dt.datetime]]


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def json_windows(document: dict) -> Windows:
    return [
        (
            f"{document['task']}/{occurrence['key']}/{index}",
            dt.datetime.fromisoformat(window["start"]).astimezone(UTC),
            dt.datetime.fromisoformat(window["finish"]).astimezone(UTC),
        )
        for occurrence in document["occurrences"]
        for index, window in enumerate(occurrence["windows"])
    ]


def uid_key(uid: str) -> str:
    return uid.split("@", 1)[0]


def icalendar_windows(data: bytes) -> Windows:
    calendar = icalendar.Calendar.from_ical(data)
    return [
        (uid_key(str(event["uid"])), event.decoded("dtstart").astimezone(UTC), event.decoded("dtend").astimezone(UTC))
        for event in calendar.walk("VEVENT")
    ]


def forget_vobject_zones() -> None:
    """vobject keeps the first VTIMEZONE it sees per TZID for the whole process (first wins);
    a calendar app reads each file afresh, so each test must make vobject read *this* one."""
    getattr(vobject.icalendar, "__tzidMap").clear()


def vobject_windows(data: bytes) -> Windows:
    forget_vobject_zones()
    calendar = vobject.readOne(data.decode("utf-8"))
    return [
        (uid_key(event.uid.value), event.dtstart.value.astimezone(UTC), event.dtend.value.astimezone(UTC))
        for event in getattr(calendar, "vevent_list", [])
    ]


def task_with(schedule_) -> Task:
    return Task(name="Edge push", site="ph", channel="push", schedule=schedule_, audiences=["all"], creatives=["c"])


def zone_case(zone: str) -> tuple[dict, bytes]:
    start, finish, recurrence = ZONE_CASES[zone]
    schedule_ = schedule(start, finish, recurrence, windows=EDGE_WINDOWS)
    found = list(occurrences(schedule_, zone))
    stamp = dt.datetime(2026, 1, 1, tzinfo=UTC)
    return to_json("edge", zone, found), to_ics("edge", task_with(schedule_), zone, found, stamp=stamp)


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    return example_repo(tmp_path_factory.mktemp("example"))


def run_schedule(repository: Path, *args: str) -> bytes:
    result = CliRunner().invoke(cli, ["schedule", *args, "--repo", str(repository)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


def example_case(repository: Path, task_id: str, *extra: str) -> tuple[dict, bytes]:
    document = json.loads(run_schedule(repository, task_id, "--format", "json", *extra))
    return document, run_schedule(repository, task_id, "--format", "ics", *extra)


# -- Python clients --------------------------------------------------------------------------


@pytest.mark.parametrize("task_id", EXAMPLE_TASKS)
def test_python_clients_read_the_shipped_example_as_json_says(example, task_id):
    document, data = example_case(example, task_id)
    expected = json_windows(document)
    assert expected, f"the example task {task_id} should have windows"
    assert icalendar_windows(data) == expected
    assert vobject_windows(data) == expected


@pytest.mark.parametrize("zone", sorted(ZONE_CASES))
def test_python_clients_read_zones_with_and_without_dst_as_json_says(zone):
    document, data = zone_case(zone)
    expected = json_windows(document)
    assert len(expected) >= 15
    assert icalendar_windows(data) == expected
    assert vobject_windows(data) == expected


def test_new_york_crosses_its_changes_with_the_offsets_of_the_day():
    document, data = zone_case("America/New_York")
    offsets = {dt.datetime.fromisoformat(w["start"]).utcoffset() for o in document["occurrences"] for w in o["windows"]}
    assert offsets == {dt.timedelta(hours=-5), dt.timedelta(hours=-4)}  # the case really crosses DST
    assert len({key for key, _, _ in json_windows(document)}) >= 15


@pytest.mark.parametrize("zone", sorted(ZONE_CASES))
def test_vtimezone_is_rrule_based_never_rdate(zone):
    _, data = zone_case(zone)
    (timezone,) = icalendar.Calendar.from_ical(data).walk("VTIMEZONE")
    assert str(timezone["tzid"]) == zone
    parts = timezone.subcomponents
    assert not any("RDATE" in part for part in parts)
    if zone == "Asia/Shanghai":  # no DST: one STANDARD, one offset
        assert [part.name for part in parts] == ["STANDARD"]
        assert parts[0].decoded("tzoffsetfrom") == parts[0].decoded("tzoffsetto") == dt.timedelta(hours=8)
    else:
        assert sorted(part.name for part in parts) == ["DAYLIGHT", "STANDARD"]
        assert all("RRULE" in part for part in parts)


def test_an_empty_range_is_still_a_valid_calendar(example):
    document, data = example_case(example, "flash-sale-push", "--from", "2030-01-01", "--to", "2030-01-31")
    assert document["occurrences"] == []
    calendar = icalendar.Calendar.from_ical(data)
    assert calendar.walk("VEVENT") == [] and [str(tz["tzid"]) for tz in calendar.walk("VTIMEZONE")] == ["Asia/Manila"]
    assert str(calendar["version"]) == "2.0"
    assert vobject_windows(data) == []
    assert data.startswith(b"BEGIN:VCALENDAR\r\n") and data.endswith(b"END:VCALENDAR\r\n")


# -- JavaScript clients ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def node_modules(tmp_path_factory) -> Path:
    """ical.js and node-ical from the npm registry, once per session, in a temporary folder.

    Skips on a machine without node; where node is installed and CI=true, the check must run
    (a missing npm or a failed install is a failure, not a skip).
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node:
        pytest.skip("node is not installed: the ical.js and node-ical check needs it")
    if not npm:
        if in_ci():
            pytest.fail("CI=true and node is installed: npm is needed to install ical.js and node-ical")
        pytest.skip("npm is not installed: it installs ical.js and node-ical for this check")
    prefix = tmp_path_factory.mktemp("npm")
    install = subprocess.run(
        [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error", *NPM_PACKAGES],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if install.returncode != 0:
        message = f"npm install {' '.join(NPM_PACKAGES)} failed: {install.stderr.strip()[-2000:]}"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return prefix / "node_modules"


def node_windows(modules: Path, data: bytes, folder: Path) -> dict[str, Windows]:
    path = folder / "calendar.ics"
    path.write_bytes(data)
    result = subprocess.run(
        ["node", str(NODE_READER), str(modules), str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return {
        library: [
            (
                uid_key(event["uid"]),
                dt.datetime.fromisoformat(event["start"].replace("Z", "+00:00")),
                dt.datetime.fromisoformat(event["end"].replace("Z", "+00:00")),
            )
            for event in events
        ]
        for library, events in json.loads(result.stdout).items()
    }


def test_javascript_clients_read_every_case_as_json_says(node_modules, example, tmp_path):
    cases = {f"example {task_id}": example_case(example, task_id) for task_id in EXAMPLE_TASKS}
    cases |= {zone: zone_case(zone) for zone in ZONE_CASES}
    cases["empty range"] = example_case(example, "flash-sale-push", "--from", "2030-01-01", "--to", "2030-01-31")
    for name, (document, data) in cases.items():
        expected = json_windows(document)
        read = node_windows(node_modules, data, tmp_path)
        assert set(read) == {"ical.js", "node-ical"}
        for library, windows in read.items():
            wrong = [(want, got) for want, got in zip(expected, windows) if want != got]
            assert len(windows) == len(expected) and not wrong, f"{library} reads {name} differently: {wrong[:3]}"
