"""Delivery totals and the executor health check, as a library and through ``campaigns status``."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cli_runner import campaigns
from delivery_state import import_users, platform_body, seed, set_status, task_body, write_users

from engine.clock import Clock
from engine.delivery.executor import Executor
from engine.delivery.ledger import Ledger
from engine.delivery.report import delivery_totals, executor_behind, task_report
from engine.state import StateStore

MANILA = dt.timezone(dt.timedelta(hours=8))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    write_users(tmp_path / "users.csv", 20, opt_out={0: "push"})
    store = StateStore.open(f"sqlite:///{tmp_path}/.campaigns/state.db", tmp_path)
    try:
        import_users(store, tmp_path / "users.csv")
        tasks = {
            "t-daily": task_body(start="2026-12-01", finish="2026-12-05", recurrence={"type": "daily", "every": 1}),
            "t-once": task_body(),
        }
        seed(store, platform=platform_body(outbox=".campaigns/outbox"), tasks=tasks)
    finally:
        store.close()
    return tmp_path


def open_store(repo: Path) -> StateStore:
    return StateStore.open(f"sqlite:///{repo}/.campaigns/state.db", repo)


def test_totals_add_up_every_occurrence(repo: Path) -> None:
    store = open_store(repo)
    try:
        with Executor(store, repo, clock=Clock(dt.datetime(2026, 12, 2, 10, tzinfo=MANILA))) as executor:
            executor.run_pass()  # the 1st expired (passed), the 2nd delivered; t-once expired
        totals = delivery_totals(store)
        assert totals["t-daily"].as_dict() == {"pending": 0, "sent": 19, "failed": 0, "expired": 19, "capped": 0, "suppressed": 2}
        assert totals["t-once"].expired == 19 and totals["t-once"].sent == 0
        report = task_report(store, "t-daily", clock=Clock.fixed(dt.datetime(2026, 12, 2, 10, tzinfo=MANILA)))
        assert [o.occurrence for o in report.occurrences] == ["2026-12-01", "2026-12-02"]
    finally:
        store.close()


def test_behind_when_a_due_occurrence_is_not_closed_past_its_window(repo: Path) -> None:
    store = open_store(repo)
    try:
        since = store.task_states()["t-daily"].since
        # days after the apply, nothing ran: every occurrence that ended since then is behind
        later = since + dt.timedelta(days=60)
        at_later = Clock.fixed(later)
        keys = {(b.task, b.occurrence) for b in executor_behind(store, at_later)}
        assert keys == {("t-daily", f"2026-12-0{d}") for d in range(1, 6)} | {("t-once", "once")}
        assert all(b.pending is None for b in executor_behind(store, at_later))
        # a run closes them: no longer behind
        with Executor(store, repo, clock=Clock(later)) as executor:
            executor.run_pass()
        assert executor_behind(store, at_later) == []
        # an occurrence left open past its window is behind; a paused task's unstarted ones are not
        Ledger(store).open_occurrence("t-x", "once", site="ph", channel="push", finish_at=later.timestamp() - 600, now=0)
        set_status(store, "t-daily", "paused")
        found = executor_behind(store, at_later)
        assert [(b.task, b.occurrence, b.pending) for b in found] == [("t-x", "once", 0)]
        assert "t-x occurrence once" in found[0].describe()
        assert executor_behind(store, at_later, grace_s=3600) == []
    finally:
        store.close()


def test_status_shows_deliveries_and_fails_when_behind(repo: Path) -> None:
    campaigns("run", "--once", "--now", "2026-12-01T10:00:00+08:00", "--repo", str(repo))
    at = "2026-12-01T10:05:00+08:00"  # t-once's window is still open, t-daily's next ones are to come
    result = campaigns("status", "--now", at, "--repo", str(repo))
    assert result.code == 0, result.err
    assert "DELIVERIES" in result.out and "19 sent, 1 suppressed" in result.out
    data = json.loads(campaigns("status", "--format", "json", "--now", at, "--repo", str(repo)).out)
    assert data["executor"] == {"behind": [], "ok": True}
    by_task = {task["task"]: task for task in data["tasks"]}
    assert by_task["t-once"]["deliveries"]["sent"] == 19

    store = open_store(repo)
    try:  # an occurrence that ended an hour ago and was never closed
        an_hour_ago = dt.datetime.fromisoformat(at).timestamp() - 3600
        Ledger(store).open_occurrence("t-once", "stale", site="ph", channel="push", finish_at=an_hour_ago, now=0)
    finally:
        store.close()
    behind = campaigns("status", "--now", at, "--repo", str(repo))
    assert behind.code == 1
    assert "behind: task t-once occurrence stale" in behind.err
    assert "the executor has fallen behind: 1 occurrence" in behind.err
    assert "t-once" in behind.out  # the table is still shown
