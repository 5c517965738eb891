"""What ``campaigns run`` writes: off a terminal one JSON object per line from the first line on
(ISO 8601 ``time``, ``level``, ``event``, and ``task``/``occurrence`` where they apply), errors
included; on a terminal readable lines and a progress bar whose counts stay whole at 80 columns,
without colour under NO_COLOR."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import campaigns
from delivery_state import import_users, platform_body, seed, task_body, write_users
from pty_run import SGR, on_terminal, screen_lines

from engine.state import StateStore

NOW = "2026-12-01T09:30:00+08:00"  # inside the default task window (09:00-11:30 Manila)
LONG_TASK = "spring-flash-sale-reminder-for-gold-members-in-metro-manila"
USERS = 40


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    write_users(tmp_path / "users.csv", USERS, opt_out={3: "push"}, missing_name={7})
    store = StateStore.open(f"sqlite:///{tmp_path}/.campaigns/state.db", tmp_path)
    try:
        import_users(store, tmp_path / "users.csv")
        seed(store, platform=platform_body(outbox=str(tmp_path / "outbox"), batch_size=10), tasks={LONG_TASK: task_body(), "t2": task_body()})
    finally:
        store.close()
    return tmp_path


def _json_lines(text: str) -> list[dict]:
    lines = text.splitlines()
    assert lines, "nothing was logged"
    parsed = []
    for number, line in enumerate(lines, 1):
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"line {number} is not JSON: {line!r}")
    for event in parsed:
        assert list(event)[:3] == ["time", "level", "event"]
        assert dt.datetime.fromisoformat(event["time"].replace("Z", "+00:00")).utcoffset() == dt.timedelta(0)
    return parsed


def test_off_a_terminal_every_line_is_json_with_task_and_occurrence(repo: Path) -> None:
    process = subprocess.run([sys.executable, "-m", "engine", "run", "--once", "--now", NOW, "--repo", str(repo)],
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 0, process.stderr
    events = _json_lines(process.stderr)
    assert events[0]["event"] == "start"
    batches = [event for event in events if event["event"] == "batch"]
    assert batches and all(event["task"] in (LONG_TASK, "t2") and event["occurrence"] == "once" for event in batches)
    summaries = {event["task"]: event for event in events if event["event"] == "occurrence"}
    assert summaries[LONG_TASK]["occurrence"] == "once" and summaries[LONG_TASK]["sent"] == USERS - 2


def test_an_error_off_a_terminal_is_a_json_line_from_the_first_line(tmp_path: Path) -> None:
    result = campaigns("run", "--once", "--repo", str(tmp_path))  # no state here
    assert result.code == 1
    [error] = _json_lines(result.err)
    assert (error["level"], error["event"]) == ("error", "error") and "no campaigns state" in error["message"]


def test_errors_of_workers_are_json_lines_too(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = StateStore.open(f"sqlite:///{repo}/.campaigns/state.db", repo)
    try:  # a gateway whose token variable is not set: the task cannot be delivered
        providers = {"default": {"type": "gateway", "url": "http://127.0.0.1:9/send", "token_env": "CAMPAIGNS_TEST_UNSET_TOKEN"}}
        seed(store, platform=platform_body(providers=providers, batch_size=10), tasks={"t2": task_body()})
    finally:
        store.close()
    monkeypatch.delenv("CAMPAIGNS_TEST_UNSET_TOKEN", raising=False)
    process = subprocess.run([sys.executable, "-m", "engine", "run", "--once", "--now", NOW, "--workers", "2", "--repo", str(repo)],
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 1
    events = _json_lines(process.stderr)
    assert {event["worker"] for event in events if event["event"] == "error" and "worker" in event} == {"worker 1", "worker 2"}


def test_a_mistake_on_the_command_line_stays_a_plain_one_line_error(repo: Path) -> None:
    result = campaigns("run", "--once", "--now", NOW, "--task", "t3", "--repo", str(repo))
    assert result.code == 1 and result.err.startswith("Error: --task 't3'") and len(result.err.splitlines()) == 1


def test_on_a_terminal_readable_lines_and_a_bar_whose_counts_fit_80_columns(repo: Path) -> None:
    code, raw = on_terminal("run", "--once", "--now", NOW, "--repo", str(repo), columns=80, env={"NO_COLOR": "1", "COLUMNS": None})
    assert code == 0, raw
    assert not SGR.search(raw), "NO_COLOR: no colour or style"
    lines = [line for line in screen_lines(raw) if line.strip()]
    assert not any(line.lstrip().startswith("{") for line in lines), "on a terminal: no JSON"
    report = [line for line in lines if line.startswith("task ") or line.startswith("2 occurrences")]  # stdout's summary
    assert f"task {LONG_TASK} occurrence once: {USERS - 2} sent, 1 failed (1 missing-variable), 1 suppressed." in report
    shown = [line for line in lines if line not in report]  # what rich draws on stderr
    assert all(len(line) <= 80 for line in shown), [line for line in shown if len(line) > 80]
    bars = [line for line in lines if f"{USERS}/{USERS}" in line]
    assert any(line.startswith("spring-flash") and "…" in line for line in bars), lines  # the long name gave way
    assert any(f"{USERS - 2} sent" in line and "1 failed" in line and "1 supp" in line for line in bars), bars
    assert any(line.startswith("campaigns run (one pass)") for line in lines)


def test_on_a_wide_terminal_the_bar_shows_full_status_names_and_time(repo: Path) -> None:
    code, raw = on_terminal("run", "--once", "--now", NOW, "--repo", str(repo), columns=140, env={"NO_COLOR": "1", "COLUMNS": None})
    assert code == 0, raw
    bars = [line for line in screen_lines(raw) if f"{USERS}/{USERS}" in line]
    assert any(LONG_TASK in line and "1 suppressed" in line and "0:00:0" in line for line in bars), bars


def test_a_bug_off_a_terminal_is_a_json_line_not_a_traceback(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.delivery import executor

    def broken(self):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(executor.Executor, "run_pass", broken)
    result = campaigns("run", "--once", "--now", NOW, "--repo", str(repo))
    assert result.code == 1
    events = _json_lines(result.err)
    assert events[-1]["level"] == "error" and "internal error: ZeroDivisionError" in events[-1]["message"]
    assert "Traceback" not in result.err
