"""``campaigns run`` and ``campaigns report`` as a user runs them: options, errors, output, and
the service stopping cleanly on SIGTERM / SIGINT."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_runner import campaigns
from delivery_state import SERVICE_NOW, import_users, outbox_lines, platform_body, seed, service_task, task_body, write_users

from engine.delivery.ledger import Ledger
from engine.state import StateStore

NOW = "2026-12-01T09:30:00+08:00"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    write_users(tmp_path / "users.csv", 120, missing_name={9})
    store = StateStore.open(f"sqlite:///{tmp_path}/.campaigns/state.db", tmp_path)
    try:
        import_users(store, tmp_path / "users.csv")
        seed(store, platform=platform_body(outbox=".campaigns/outbox", batch_size=50), tasks={"t1": task_body()})
    finally:
        store.close()
    return tmp_path


def test_help_describes_every_option() -> None:
    result = campaigns("run", "--help")
    assert result.code == 0
    for option in ("--once", "--now", "--interval", "--batch-size", "--workers", "--task", "--log", "--state", "--repo"):
        assert option in result.out
    assert "SIGTERM" in result.out
    assert "--format" in campaigns("report", "--help").out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--once", "--now", "2026-12-01T09:30"], "needs a UTC offset"),
        (["--once", "--now", "soon"], "is not an ISO 8601"),
        (["--now", "2026-12-01 soon"], "is not an ISO 8601"),
        (["--once", "--workers", "0"], "--workers"),
    ],
)
def test_bad_options_are_one_line_errors(repo: Path, arguments: list[str], message: str) -> None:
    result = campaigns("run", *arguments, "--repo", str(repo))
    assert result.code != 0 and message in result.err and "Traceback" not in result.err


def test_no_state_is_an_error_not_a_new_state(tmp_path: Path) -> None:
    result = campaigns("run", "--once", "--repo", str(tmp_path))
    assert result.code == 1 and "no campaigns state" in result.err
    assert not (tmp_path / ".campaigns").exists()


def test_once_prints_a_summary_naming_the_occurrence_and_json_log_lines(repo: Path) -> None:
    result = campaigns("run", "--once", "--now", NOW, "--repo", str(repo))
    assert result.code == 0, result.err
    assert result.out.strip() == "task t1 occurrence once: 119 sent, 1 failed (1 missing-variable)."
    events = [json.loads(line) for line in result.err.splitlines()]  # off a terminal: JSON lines
    assert [e["event"] for e in events] == ["start", "batch", "batch", "batch", "occurrence"]
    for event in events:
        assert list(event)[:3] == ["time", "level", "event"]
        moment = dt.datetime.fromisoformat(event["time"])  # ISO 8601, in UTC; no epoch floats anywhere
        assert moment.utcoffset() == dt.timedelta(0) and event["time"].endswith("Z")
        assert not any(isinstance(value, float) and value > 1e9 for value in event.values())
    batches = events[1:4]
    assert sum(e["sent"] for e in batches) == 119 and sum(e["failed"] for e in batches) == 1
    assert {"task", "occurrence", "sent", "failed", "suppressed", "capped", "elapsed_s"} <= set(batches[0])
    assert [e["failed_by_reason"] for e in batches if e["failed"]] == [{"missing-variable": 1}]
    summary = events[-1]
    assert (summary["task"], summary["occurrence"], summary["sent"], summary["failed"]) == ("t1", "once", 119, 1)
    assert summary["message"] == result.out.strip()
    assert len(outbox_lines(repo / ".campaigns" / "outbox")) == 119
    again = campaigns("run", "--once", "--now", NOW, "--repo", str(repo))
    assert again.code == 0 and again.out.strip() == "Nothing due."
    assert [json.loads(line)["event"] for line in again.err.splitlines()] == ["start"]


def test_report_table_and_json(repo: Path) -> None:
    campaigns("run", "--once", "--now", NOW, "--repo", str(repo))
    table = campaigns("report", "t1", "--repo", str(repo))
    assert table.code == 0, table.err
    lines = table.out.splitlines()
    assert lines[0] == "Task t1 (running, push)"
    assert lines[1].split() == [
        "OCCURRENCE", "STATE", "SENT", "FAILED", "EXPIRED", "CAPPED", "SUPPRESSED", "PENDING", "UNCONFIRMED", "FAILED", "BY",
        "REASON",
    ]
    assert lines[2].split() == ["once", "closed", "119", "1", "0", "0", "0", "0", "0", "1", "missing-variable"]
    assert lines[3].split() == ["total", "119", "1", "0", "0", "0", "0", "0", "1", "missing-variable"]
    data = json.loads(campaigns("report", "t1", "--format", "json", "--repo", str(repo)).out)
    assert data["occurrences"][0] == {
        "occurrence": "once", "state": "closed", "finish": "2026-12-01T03:30:00+00:00",
        "sent": 119, "failed": 1, "expired": 0, "capped": 0, "suppressed": 0, "pending": 0, "unconfirmed": 0,
        "failed_by_reason": {"missing-variable": 1}, "expired_by_reason": {},
    }
    assert data["totals"]["sent"] == 119 and data["totals"]["failed_by_reason"] == {"missing-variable": 1}


def test_report_counts_members_not_yet_reached_as_pending(repo: Path) -> None:
    store = StateStore.open(f"sqlite:///{repo}/.campaigns/state.db", repo)
    try:
        ledger = Ledger(store)
        ledger.open_occurrence("t1", "once", site="ph", channel="push", finish_at=2e9, now=0)
    finally:
        store.close()
    data = json.loads(campaigns("report", "t1", "--format", "json", "--repo", str(repo)).out)
    assert data["occurrences"][0]["state"] == "open" and data["occurrences"][0]["pending"] == 120
    quick = json.loads(campaigns("report", "t1", "--format", "json", "--no-estimate", "--repo", str(repo)).out)
    assert quick["occurrences"][0]["pending"] == 0


def test_report_of_an_unknown_task(repo: Path) -> None:
    result = campaigns("report", "t11", "--repo", str(repo))
    assert result.code == 1 and "task 't11' is not in the state (did you mean 't1'?)" in result.err


def _live_repo(tmp_path: Path, rate: int | None = None) -> Path:
    """A task whose window is open right now, from SERVICE_NOW (the service runs on from it in real time)."""
    write_users(tmp_path / "users.csv", 300)
    store = StateStore.open(f"sqlite:///{tmp_path}/.campaigns/state.db", tmp_path)
    try:
        import_users(store, tmp_path / "users.csv")
        task = service_task()
        seed(store, platform=platform_body(outbox=".campaigns/outbox", batch_size=20, rates={"push": rate} if rate else None),
             tasks={"t1": task})
    finally:
        store.close()
    return tmp_path


def _service(repo: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "engine", "run", "--now", SERVICE_NOW, "--repo", str(repo), "--interval", "0.2", "--log", "json", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ},
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_service_polls_and_stops_cleanly(tmp_path: Path, signum: int) -> None:
    repo = _live_repo(tmp_path)
    service = _service(repo)
    try:
        deadline = time.monotonic() + 30
        while len(outbox_lines(repo / ".campaigns" / "outbox")) < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # a few idle polls
        service.send_signal(signum)
        out, err = service.communicate(timeout=20)
    finally:
        if service.poll() is None:
            service.kill()
    assert service.returncode == 0, err
    assert "Stopping after the batch in hand" in err
    assert len(outbox_lines(repo / ".campaigns" / "outbox")) == 300


def test_sigterm_mid_fan_out_leaves_nothing_lost(tmp_path: Path) -> None:
    repo = _live_repo(tmp_path, rate=100)  # 300 users at 100/s: three seconds
    service = _service(repo)
    try:
        deadline = time.monotonic() + 30
        while len(outbox_lines(repo / ".campaigns" / "outbox")) < 40 and time.monotonic() < deadline:
            time.sleep(0.02)
        service.send_signal(signal.SIGTERM)
        _out, err = service.communicate(timeout=20)
    finally:
        if service.poll() is None:
            service.kill()
    assert service.returncode == 0, err
    sent = len(outbox_lines(repo / ".campaigns" / "outbox"))
    assert 40 <= sent < 300
    store = StateStore.open(f"sqlite:///{repo}/.campaigns/state.db", repo)
    try:
        rows = Ledger(store).rows("t1", "once")
        assert sum(1 for row in rows if row["status"] == "sent") == sent
        assert Ledger(store).claim_holders("t1", "once") <= {None}  # nothing left held by the stopped executor
    finally:
        store.close()
    rest = campaigns("run", "--once", "--now", SERVICE_NOW, "--repo", str(repo))
    assert rest.code == 0, rest.err
    users = [line["user_id"] for line in outbox_lines(repo / ".campaigns" / "outbox")]
    assert sorted(users) == sorted(set(users)) and len(users) == 300


def test_workers_share_a_fan_out(tmp_path: Path) -> None:
    write_users(tmp_path / "users.csv", 400)
    store = StateStore.open(f"sqlite:///{tmp_path}/.campaigns/state.db", tmp_path)
    try:
        import_users(store, tmp_path / "users.csv")
        seed(store, platform=platform_body(outbox=".campaigns/outbox", rates={"push": 400}), tasks={"t1": task_body()})
    finally:
        store.close()
    result = subprocess.run(  # one second of work at 400/s: both workers get batches
        [sys.executable, "-m", "engine", "run", "--once", "--now", NOW, "--repo", str(tmp_path), "--workers", "2", "--batch-size", "20"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "2 workers finished" in result.stdout
    assert {line.split(":")[0] for line in result.stdout.splitlines() if line.startswith("worker")} == {"worker 1", "worker 2"}
    users = [line["user_id"] for line in outbox_lines(tmp_path / ".campaigns" / "outbox")]
    assert len(users) == len(set(users)) == 400
    executors = {json.loads(line)["executor"] for line in result.stderr.splitlines() if line.startswith("{")}
    assert len(executors) == 2


def test_platform_executor_workers_is_the_default(tmp_path: Path) -> None:
    write_users(tmp_path / "users.csv", 60)
    platform = platform_body(outbox=".campaigns/outbox")
    platform["executor"] = {"workers": 2, "batch_size": 10}
    store = StateStore.open(f"sqlite:///{tmp_path}/.campaigns/state.db", tmp_path)
    try:
        import_users(store, tmp_path / "users.csv")
        seed(store, platform=platform, tasks={"t1": task_body()})
    finally:
        store.close()
    result = subprocess.run(
        [sys.executable, "-m", "engine", "run", "--once", "--now", NOW, "--repo", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "2 workers finished" in result.stdout
    users = [line["user_id"] for line in outbox_lines(tmp_path / ".campaigns" / "outbox")]
    assert len(users) == len(set(users)) == 60


def test_workers_stop_on_sigterm(tmp_path: Path) -> None:
    repo = _live_repo(tmp_path, rate=100)
    service = _service(repo, "--workers", "2")
    try:
        deadline = time.monotonic() + 30
        while len(outbox_lines(repo / ".campaigns" / "outbox")) < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        service.send_signal(signal.SIGTERM)
        _out, err = service.communicate(timeout=20)
    finally:
        if service.poll() is None:
            service.kill()
    assert service.returncode == 0, err
    users = [line["user_id"] for line in outbox_lines(repo / ".campaigns" / "outbox")]
    assert len(users) == len(set(users)) < 300
