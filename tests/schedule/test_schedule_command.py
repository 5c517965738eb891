"""``campaigns schedule`` on small repositories laid out as SPEC section 2 describes."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import icalendar
import pytest
from schedule_oracle import naive_dates, schedule

from engine.cli import main

UTC = dt.timezone.utc

PLATFORM = """\
sites:
  ph:
    name: Philippines wallet
    timezone: Asia/Manila
    channels: [push, sms]
    mini_programs: [shop]
    testers: [u-tester-1]
  us:
    name: US wallet
    timezone: America/New_York
    channels: [push]
"""

TEMPLATE = """\
name: Promo push
channel: push
status: approved
fields:
  title: {required: true, max_length: 50}
  content: {required: true, max_length: 200}
  redirection: {required: true, max_length: 2048}
"""

TASK = """\
name: Flash sale push
site: {site}
channel: push
schedule:
  start_date: {start}
  finish_date: {finish}
  windows:
    - {{start: "2:30", finish: "05:00"}}
    - {{start: 18:00, finish: 21:00}}
  do_not_disturb: [{dnd}]
  recurrence: {recurrence}
audiences: [everyone-{site}]
creatives: [flash-a]
"""


def write_repository(root: Path, tasks: dict[str, dict]) -> Path:
    files = {
        "platform.yaml": PLATFORM,
        "templates/promo-push.yaml": TEMPLATE,
        "audiences/everyone-ph.yaml": "name: Everyone\nsite: ph\nsource:\n  users: [u-1, u-2]\n",
        "audiences/everyone-us.yaml": "name: Everyone\nsite: us\nsource:\n  users: [u-3]\n",
        "creatives/flash-a.yaml": (
            "name: Flash A\ntemplate: promo-push\ntitle: Flash sale\ncontent: Hurry\n"
            "redirection: https://example.com/sale\n"
        ),
        "campaigns/xmas/campaign.yaml": "name: Christmas\ndescription: Holiday promos\n",
    }
    for task_id, fields in tasks.items():
        values = {"site": "ph", "dnd": "", **fields}
        files[f"campaigns/xmas/{task_id}.yaml"] = TASK.format(**values)
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


TASKS = {
    "every-other-day": {"start": "2026-12-01", "finish": "2026-12-20", "recurrence": "{type: daily, every: 2}", "dnd": "monday"},
    "spring-forward": {"site": "us", "start": "2026-03-06", "finish": "2026-03-10", "recurrence": "{type: daily}"},
    "month-end": {"start": "2027-01-01", "finish": "2028-12-31", "recurrence": "{type: monthly, day: 31}"},
    "launch": {"start": "2026-12-07", "finish": "2026-12-09", "recurrence": "{type: one_time}", "dnd": "monday"},
    "fortnightly": {
        "start": "2026-11-29",
        "finish": "2027-01-31",
        "recurrence": "{type: weekly, days: [monday, sunday], every: 2}",
    },
}


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    return write_repository(tmp_path_factory.mktemp("repo"), TASKS)


def run(capsysbinary, *args: str) -> tuple[int, bytes, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    captured = capsysbinary.readouterr()
    return code, captured.out, captured.err.decode()


def expected_keys(task_id: str, first: dt.date | None = None, last: dt.date | None = None) -> list[str]:
    fields = TASKS[task_id]
    recurrence = {
        "every-other-day": {"type": "daily", "every": 2},
        "spring-forward": {"type": "daily"},
        "month-end": {"type": "monthly", "day": 31},
        "launch": {"type": "one_time"},
        "fortnightly": {"type": "weekly", "days": ["monday", "sunday"], "every": 2},
    }[task_id]
    dnd = [fields["dnd"]] if fields.get("dnd") else []
    dates = naive_dates(schedule(fields["start"], fields["finish"], recurrence, do_not_disturb=dnd))
    inside = [d for d in dates if (first is None or d >= first) and (last is None or d <= last)]
    if recurrence["type"] == "one_time":
        return ["once"] if inside else []
    return [d.isoformat() for d in inside]


@pytest.mark.parametrize("task_id", list(TASKS))
def test_json_lists_the_occurrences_of_the_task(repository, capsysbinary, task_id):
    code, out, err = run(capsysbinary, "schedule", task_id, "--format", "json", "--repo", str(repository))
    assert code == 0, err
    document = json.loads(out)
    assert document["task"] == task_id
    assert document["timezone"] == ("America/New_York" if TASKS[task_id].get("site") == "us" else "Asia/Manila")
    assert [o["key"] for o in document["occurrences"]] == expected_keys(task_id)
    for occurrence in document["occurrences"]:
        for window in occurrence["windows"]:
            start, finish = dt.datetime.fromisoformat(window["start"]), dt.datetime.fromisoformat(window["finish"])
            assert start.utcoffset() is not None and start < finish


@pytest.mark.parametrize("task_id", list(TASKS))
def test_ics_has_one_event_per_json_window(repository, capsysbinary, task_id):
    _, out, _ = run(capsysbinary, "schedule", task_id, "--format", "json", "--repo", str(repository))
    code, ics, err = run(capsysbinary, "schedule", task_id, "--format", "ics", "--repo", str(repository))
    assert code == 0, err
    windows = [
        (dt.datetime.fromisoformat(w["start"]).astimezone(UTC), dt.datetime.fromisoformat(w["finish"]).astimezone(UTC))
        for o in json.loads(out)["occurrences"]
        for w in o["windows"]
    ]
    events = list(icalendar.Calendar.from_ical(ics).walk("VEVENT"))
    assert [(e.decoded("dtstart").astimezone(UTC), e.decoded("dtend").astimezone(UTC)) for e in events] == windows
    assert all("Flash sale push" in str(e["summary"]) and "push" in str(e["summary"]) for e in events)


def test_spring_forward_window_opens_at_the_transition(repository, capsysbinary):
    _, out, _ = run(capsysbinary, "schedule", "spring-forward", "--format", "json", "--repo", str(repository))
    by_key = {o["key"]: o["windows"][0]["start"] for o in json.loads(out)["occurrences"]}
    assert dt.datetime.fromisoformat(by_key["2026-03-08"]).astimezone(UTC) == dt.datetime(2026, 3, 8, 7, tzinfo=UTC)


@pytest.mark.parametrize(
    ("task_id", "first", "last"),
    [
        ("every-other-day", "2026-12-04", "2026-12-12"),
        ("every-other-day", "2026-12-05", None),
        ("month-end", None, "2027-04-30"),
        ("month-end", "2028-02-01", "2028-02-29"),
        ("launch", "2026-12-09", "2026-12-31"),
        ("launch", "2026-12-07", "2026-12-07"),  # only the do-not-disturb Monday: nothing
        ("fortnightly", "2026-12-01", "2026-12-31"),
    ],
)
def test_from_and_to_limit_the_range(repository, capsysbinary, task_id, first, last):
    args = ["schedule", task_id, "--format", "json", "--repo", str(repository)]
    args += ["--from", first] if first else []
    args += ["--to", last] if last else []
    code, out, err = run(capsysbinary, *args)
    assert code == 0, err
    bounds = [dt.date.fromisoformat(x) if x else None for x in (first, last)]
    assert [o["key"] for o in json.loads(out)["occurrences"]] == expected_keys(task_id, *bounds)


def test_table_is_the_default(repository, capsysbinary):
    code, out, err = run(capsysbinary, "schedule", "every-other-day", "--repo", str(repository))
    assert code == 0, err
    text = out.decode()
    for key in expected_keys("every-other-day"):
        assert key in text
    assert "Asia/Manila" in text and "18:00–21:00" in text


def test_repo_defaults_to_the_environment_then_the_current_directory(repository, capsysbinary, monkeypatch, tmp_path):
    monkeypatch.setenv("CAMPAIGNS_REPO", str(repository))
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsysbinary, "schedule", "launch", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["task"] == "launch"
    monkeypatch.delenv("CAMPAIGNS_REPO")
    monkeypatch.chdir(repository)
    code, out, err = run(capsysbinary, "schedule", "launch", "--format", "json")
    assert code == 0, err
    assert [o["key"] for o in json.loads(out)["occurrences"]] == ["once"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["every-other-dya"], "did you mean 'every-other-day'"),
        (["nothing-like-it"], "no task 'nothing-like-it'"),
        (["launch", "--from", "2026-12-31", "--to", "2026-12-01"], "is after --to"),
        (["launch", "--from", "2026-13-01"], "--from '2026-13-01' is not a date"),
        (["launch", "--to", "tomorrow"], "--to 'tomorrow' is not a date"),
        (["launch", "--from", "20261201"], "is not a date"),
    ],
)
def test_bad_arguments_are_one_line_errors(repository, capsysbinary, args, message):
    code, out, err = run(capsysbinary, "schedule", *args, "--repo", str(repository))
    assert code == 1
    assert out == b""
    assert err.startswith("Error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_an_invalid_repository_is_reported_not_scheduled(tmp_path, capsysbinary):
    root = write_repository(tmp_path, {"broken": {"start": "2026-12-10", "finish": "2026-12-01", "recurrence": "{type: daily}"}})
    code, out, err = run(capsysbinary, "schedule", "broken", "--repo", str(root))
    assert code == 1 and out == b""
    assert "date-range" in err and "Error:" in err


def test_help_describes_every_option(capsysbinary):
    code, out, _ = run(capsysbinary, "schedule", "--help")
    assert code == 0
    text = out.decode()
    for option in ("--from", "--to", "--format", "--repo", "table", "json", "ics"):
        assert option in text


def test_the_installed_command_writes_an_ics_file(repository, tmp_path):
    # End to end through the console script, as CI would run it, output redirected to a file.
    target = tmp_path / "launch.ics"
    with target.open("wb") as handle:
        done = subprocess.run(
            [sys.executable, "-m", "engine", "schedule", "launch", "--format", "ics", "--repo", str(repository)],
            stdout=handle,
            stderr=subprocess.PIPE,
            env={**os.environ, "CAMPAIGNS_REPO": ""},
            check=False,
        )
    assert done.returncode == 0, done.stderr
    events = list(icalendar.Calendar.from_ical(target.read_bytes()).walk("VEVENT"))
    assert {e.decoded("dtstart").date() for e in events} == {dt.date(2026, 12, 8), dt.date(2026, 12, 9)}
