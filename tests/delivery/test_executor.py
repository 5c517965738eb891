"""The executor against a real state (SQLite and PostgreSQL), the real directory and audiences,
and the outbox: who gets what, when, and what the ledger says afterwards."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from delivery_state import (
    creative_body,
    import_users,
    outbox_lines,
    platform_body,
    seed,
    set_status,
    task_body,
    write_users,
)

from engine.clock import Clock
from engine.delivery.executor import Executor
from engine.delivery.ids import MESSAGE_ID_LENGTH, message_id
from engine.delivery.ledger import Ledger
from engine.delivery.report import task_report
from engine.state import StateStore

MANILA = dt.timezone(dt.timedelta(hours=8))


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(2026, 12, day, hour, minute, second, tzinfo=MANILA)


class Events:
    """A reporter that keeps what the executor says."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.errors: list[str] = []

    def occurrence(self, task: str, occurrence: str, total: int | None) -> None:
        pass

    def batch(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def finished(self, task: str, occurrence: str) -> None:
        pass

    def error(self, message: str) -> None:
        self.errors.append(message)


def run_at(store: StateStore, base: Path, moment: dt.datetime, **options: Any):
    events = Events()
    with Executor(store, base, clock=Clock(moment), reporter=events, **options) as executor:
        summary = executor.run_pass()
    return summary, events


@pytest.fixture
def sqlite_store(tmp_path: Path):
    store = StateStore.open(f"sqlite:///{tmp_path}/state/state.db", tmp_path)
    yield store
    store.close()


@pytest.fixture
def users(tmp_path: Path) -> list[str]:
    return write_users(tmp_path / "users.csv", 300, opt_out={3: "push", 4: "sms|push", 5: "sms"}, missing_name={7})


def setup(store: StateStore, tmp_path: Path, users_csv: bool = True, **kwargs: Any) -> Path:
    if users_csv:
        import_users(store, tmp_path / "users.csv")
    outbox = tmp_path / "outbox"
    kwargs.setdefault("platform", platform_body(outbox=outbox))
    kwargs.setdefault("tasks", {"t1": task_body()})
    seed(store, **kwargs)
    return outbox


def test_every_member_once_with_the_recorded_id(state_store: StateStore, tmp_path: Path, users: list[str]) -> None:
    outbox = setup(state_store, tmp_path)
    summary, events = run_at(state_store, tmp_path, at(1, 9, 30))
    lines = outbox_lines(outbox)
    sent_to = [line["user_id"] for line in lines]
    reachable = [u for i, u in enumerate(users) if i not in (3, 4, 7)]
    assert sorted(sent_to) == reachable  # once each; opted-out and unrenderable users get nothing
    rows = {row["user_id"]: row for row in Ledger(state_store).rows("t1", "once")}
    assert len(rows) == len(users)
    for line in lines:
        assert line["message_id"] == rows[line["user_id"]]["message_id"] == message_id("t1", "once", line["user_id"])
        assert len(line["message_id"]) == MESSAGE_ID_LENGTH <= 64
        assert line["occurrence"] == "once" and line["task"] == "t1" and line["channel"] == "push"
        assert line["title"] == f"Hi Name{int(line['user_id'][1:])}"
    assert rows[users[3]]["status"] == rows[users[4]]["status"] == "suppressed"
    assert rows[users[5]]["status"] == "sent"  # opted out of sms only
    assert rows[users[7]]["status"] == "failed" and "first_name" in rows[users[7]]["error"]
    assert summary.counts.sent == len(reachable)

    again, _ = run_at(state_store, tmp_path, at(1, 10, 0))
    assert len(outbox_lines(outbox)) == len(lines)  # nothing twice, even later in the window
    assert again.counts.sent == 0
    report = task_report(state_store, "t1")
    assert [(o.occurrence, o.state) for o in report.occurrences] == [("once", "closed")]
    assert report.totals == {"sent": len(reachable), "failed": 1, "expired": 0, "capped": 0, "suppressed": 2, "pending": 0}


def test_progress_counts_match_the_ledger_rows(state_store: StateStore, tmp_path: Path, users: list[str]) -> None:
    setup(state_store, tmp_path, platform=platform_body(outbox=tmp_path / "outbox", batch_size=37))
    run_at(state_store, tmp_path, at(1, 9, 30))
    ledger = Ledger(state_store)
    kept = {key: p.counts for key, p in ledger.progress().items()}
    assert kept == ledger.counted()


def test_nothing_outside_windows_or_for_tasks_not_running(sqlite_store: StateStore, tmp_path: Path, users: list[str]) -> None:
    tasks = {
        "t-run": task_body(windows=[("09:00", "11:30"), ("18:00", "21:00")], recurrence={"type": "daily", "every": 1}, finish="2026-12-03"),
        "t-paused": task_body(),
        "t-draft": task_body(),
        "t-testing": task_body(),
        "t-done": task_body(),
    }
    statuses = {"t-paused": "paused", "t-draft": "draft", "t-testing": "testing", "t-done": "completed"}
    outbox = setup(sqlite_store, tmp_path, tasks=tasks, statuses=statuses)
    for moment in (at(1, 8, 59, 59), at(1, 11, 30), at(1, 17, 59), at(2, 8, 0)):
        run_at(sqlite_store, tmp_path, moment)
        assert outbox_lines(outbox) == []
    run_at(sqlite_store, tmp_path, at(3, 9, 0))  # the 1st and 2nd are over by now: expired, never sent
    assert {(line["task"], line["occurrence"]) for line in outbox_lines(outbox)} == {("t-run", "2026-12-03")}


def test_do_not_disturb_day_never_delivers(sqlite_store: StateStore, tmp_path: Path, users: list[str]) -> None:
    # 2026-12-07 is a Monday
    task = task_body(start="2026-12-07", finish="2026-12-08", recurrence={"type": "daily", "every": 1}, do_not_disturb=["monday"])
    outbox = setup(sqlite_store, tmp_path, tasks={"t1": task})
    run_at(sqlite_store, tmp_path, at(7, 10))
    assert outbox_lines(outbox) == []
    run_at(sqlite_store, tmp_path, at(8, 10))
    assert {line["occurrence"] for line in outbox_lines(outbox)} == {"2026-12-08"}


def test_audiences_are_deduplicated_and_creatives_split_evenly(sqlite_store: StateStore, tmp_path: Path) -> None:
    write_users(tmp_path / "users.csv", 2000)
    audiences = {
        "low": {"name": "Low", "site": "ph", "source": {"where": {"all": [{"attr": "points", "lt": 1500}]}}},
        "high": {"name": "High", "site": "ph", "source": {"where": {"all": [{"attr": "points", "gte": 500}]}}},
    }
    creatives = {"cr-a": creative_body(title="A {{ user.first_name }}"), "cr-b": creative_body(title="B {{ user.first_name }}")}
    tasks = {
        "t1": task_body(audiences=["low", "high"], creatives=["cr-a", "cr-b"], recurrence={"type": "daily", "every": 1}, finish="2026-12-02")
    }
    outbox = setup(sqlite_store, tmp_path, tasks=tasks, audiences=audiences, creatives=creatives)
    run_at(sqlite_store, tmp_path, at(1, 10))
    first = outbox_lines(outbox)
    assert Counter(line["user_id"] for line in first).most_common(1)[0][1] == 1
    assert len(first) == 2000
    split = Counter(line["creative"] for line in first)
    assert 900 <= split["cr-a"] <= 1100 and split["cr-a"] + split["cr-b"] == 2000
    assert all(line["title"].startswith("A " if line["creative"] == "cr-a" else "B ") for line in first)
    run_at(sqlite_store, tmp_path, at(2, 10))
    second = [line for line in outbox_lines(outbox) if line["occurrence"] == "2026-12-02"]
    assert {l["user_id"]: l["creative"] for l in second} == {l["user_id"]: l["creative"] for l in first}  # stable


def test_daily_cap_counts_across_tasks_on_the_site_day(state_store: StateStore, tmp_path: Path) -> None:
    write_users(tmp_path / "users.csv", 50)
    tasks = {name: task_body() for name in ("t1", "t2", "t3")}
    outbox = setup(state_store, tmp_path, platform=platform_body(outbox=tmp_path / "outbox", cap=2), tasks=tasks)
    run_at(state_store, tmp_path, at(1, 10))
    lines = outbox_lines(outbox)
    per_user = Counter(line["user_id"] for line in lines)
    assert set(per_user.values()) == {2} and len(per_user) == 50
    capped = [r for r in Ledger(state_store).rows("t3") if r["status"] == "capped"]
    assert len(capped) == 50 and "cap 2" in capped[0]["error"]


def test_failed_messages_do_not_count_toward_the_cap(sqlite_store: StateStore, tmp_path: Path) -> None:
    write_users(tmp_path / "users.csv", 10, missing_name=set(range(10)))
    creatives = {"broken": creative_body(), "plain": creative_body(title="Hello", content="Plain")}
    tasks = {"t1": task_body(creatives=["broken"]), "t2": task_body(creatives=["plain"])}
    outbox = setup(sqlite_store, tmp_path, platform=platform_body(outbox=tmp_path / "outbox", cap=1), tasks=tasks, creatives=creatives)
    run_at(sqlite_store, tmp_path, at(1, 10))
    assert len(outbox_lines(outbox)) == 10  # t1 failed for everyone; t2 still reaches them


def test_an_occurrence_that_passed_expires_its_unreached_users(state_store: StateStore, tmp_path: Path, users: list[str]) -> None:
    task = task_body(start="2026-12-01", finish="2026-12-03", recurrence={"type": "daily", "every": 1})
    outbox = setup(state_store, tmp_path, tasks={"t1": task})
    summary, _ = run_at(state_store, tmp_path, at(3, 12))  # the executor was down on the 1st, 2nd and 3rd
    assert outbox_lines(outbox) == []
    report = task_report(state_store, "t1")
    assert [o.occurrence for o in report.occurrences] == ["2026-12-01", "2026-12-02", "2026-12-03"]
    for occurrence in report.occurrences:
        assert occurrence.state == "closed"
        assert occurrence.counts.expired == len(users) - 2 and occurrence.counts.suppressed == 2
    run_at(state_store, tmp_path, at(3, 10))  # even a clock set back into the window sends nothing late
    assert outbox_lines(outbox) == []


def test_only_occurrences_since_the_task_runs_are_expired(sqlite_store: StateStore, tmp_path: Path, users: list[str]) -> None:
    task = task_body(start="2026-11-01", finish="2026-12-31", recurrence={"type": "daily", "every": 1})
    setup(sqlite_store, tmp_path, tasks={"t1": task})
    state = sqlite_store.task_states()["t1"]
    later = state.since + dt.timedelta(days=2)  # two days after the apply
    run_at(sqlite_store, tmp_path, later)
    keys = sorted(key for (_task, key) in Ledger(sqlite_store).progress("t1"))
    first_due = (state.since.astimezone(MANILA)).date()
    assert keys and dt.date.fromisoformat(keys[0]) >= first_due - dt.timedelta(days=1)
    assert len(keys) <= 3


def test_one_time_task_continues_in_later_windows(sqlite_store: StateStore, tmp_path: Path, users: list[str]) -> None:
    task = task_body(start="2026-12-01", finish="2026-12-02", windows=[("09:00", "11:30")])
    platform = platform_body(outbox=tmp_path / "outbox", batch_size=50, rates={"push": 100})
    outbox = setup(sqlite_store, tmp_path, tasks={"t1": task}, platform=platform)
    # the first window closes 0.5 s after the pass starts: what is not sent by then stays pending
    summary, _ = run_at(sqlite_store, tmp_path, at(1, 11, 29, 59) + dt.timedelta(milliseconds=500))
    first = len(outbox_lines(outbox))
    assert 0 < first < 150
    run_at(sqlite_store, tmp_path, at(1, 12))  # between windows: nothing
    assert len(outbox_lines(outbox)) == first
    run_at(sqlite_store, tmp_path, at(2, 9, 5))
    lines = outbox_lines(outbox)
    assert sorted(l["user_id"] for l in lines) == sorted(u for i, u in enumerate(users) if i not in (3, 4, 7))
    rows = Ledger(sqlite_store).rows("t1", "once")
    assert not [r for r in rows if r["status"] == "pending"]


def test_a_window_that_closes_during_the_fan_out_stops_it(sqlite_store: StateStore, tmp_path: Path, users: list[str]) -> None:
    task = task_body(start="2026-12-01", finish="2026-12-01", recurrence={"type": "daily", "every": 1})
    creatives = {"cr-a": creative_body()}
    outbox = setup(sqlite_store, tmp_path, tasks={"t1": task}, creatives=creatives,
                   platform=platform_body(outbox=tmp_path / "outbox", batch_size=10, rates={"push": 100}))
    run_at(sqlite_store, tmp_path, at(1, 11, 29, 59))  # 1 s of window at 100/s
    lines = outbox_lines(outbox)
    assert 20 <= len(lines) <= 200
    for line in lines:
        sent = dt.datetime.fromisoformat(line["sent_at"].replace("Z", "+00:00"))
        assert sent  # real clock; the simulated one is checked through the ledger:
    rows = Ledger(sqlite_store).rows("t1", "2026-12-01")
    assert all(r["at"] < at(1, 11, 30).timestamp() + 0.5 for r in rows if r["status"] == "sent")
    run_at(sqlite_store, tmp_path, at(1, 11, 31))  # over: the rest expires, nobody gets it late
    assert len(outbox_lines(outbox)) == len(lines)
    counts = task_report(sqlite_store, "t1").occurrences[0].counts
    assert counts.sent == len(lines) and counts.pending == 0
    assert counts.expired + counts.sent + counts.suppressed + counts.failed == len(users)


def test_pacing_keeps_the_site_rate(sqlite_store: StateStore, tmp_path: Path) -> None:
    import time

    write_users(tmp_path / "users.csv", 120)
    outbox = setup(sqlite_store, tmp_path, platform=platform_body(outbox=tmp_path / "outbox", rates={"push": 100}))
    started = time.monotonic()
    run_at(sqlite_store, tmp_path, at(1, 10))
    elapsed = time.monotonic() - started
    assert len(outbox_lines(outbox)) == 120
    assert elapsed >= 1.0  # 120 messages at 100/s: at least 1.1 s after the first burst


def test_paused_task_stops_and_its_started_occurrence_expires(sqlite_store: StateStore, tmp_path: Path, users: list[str]) -> None:
    outbox = setup(sqlite_store, tmp_path, platform=platform_body(outbox=tmp_path / "outbox", batch_size=50))
    ledger = Ledger(sqlite_store)
    ledger.open_occurrence("t1", "once", site="ph", channel="push", finish_at=at(1, 11, 30).timestamp(), now=0)
    set_status(sqlite_store, "t1", "paused")
    run_at(sqlite_store, tmp_path, at(1, 10))
    assert outbox_lines(outbox) == []
    run_at(sqlite_store, tmp_path, at(1, 12))  # over: what the pause left undelivered is expired
    report = task_report(sqlite_store, "t1")
    assert report.occurrences[0].state == "closed" and report.occurrences[0].counts.expired == len(users) - 2


def test_render_failures_never_send_a_hole(sqlite_store: StateStore, tmp_path: Path, users: list[str]) -> None:
    creatives = {"cr-a": creative_body(title="{{ user.first_name }}", content="{{ user.nickname }}")}
    outbox = setup(sqlite_store, tmp_path, creatives=creatives)
    run_at(sqlite_store, tmp_path, at(1, 10))
    assert outbox_lines(outbox) == []
    failed = [r for r in Ledger(sqlite_store).rows("t1") if r["status"] == "failed"]
    assert len(failed) == len(users) - 2
    assert "nickname" in failed[0]["error"] and "missing variable" in failed[0]["error"]


def test_redirection_lists_render_each_url(sqlite_store: StateStore, tmp_path: Path) -> None:
    write_users(tmp_path / "users.csv", 3)
    creatives = {"cr-a": creative_body(redirection=["gcash://u/{{ user.user_id }}", "https://x.example/{{ user.points }}"])}
    outbox = setup(sqlite_store, tmp_path, creatives=creatives)
    run_at(sqlite_store, tmp_path, at(1, 10))
    assert [line["redirection"] for line in outbox_lines(outbox)] == [
        [f"gcash://u/u0000{i}", f"https://x.example/{i}"] for i in range(3)
    ]


def test_a_new_apply_during_the_fan_out_stops_the_old_content(sqlite_store: StateStore, tmp_path: Path, users: list[str]) -> None:
    import engine.delivery.executor as executor_module

    outbox = setup(sqlite_store, tmp_path, platform=platform_body(outbox=tmp_path / "outbox", batch_size=20, rates={"push": 400}))
    previous = executor_module.STATUS_CHECK_S
    executor_module.STATUS_CHECK_S = 0.0
    try:
        import threading

        timer = threading.Timer(0.15, lambda: set_status(sqlite_store, "t1", "paused"))
        timer.start()
        run_at(sqlite_store, tmp_path, at(1, 10))
        timer.join()
    finally:
        executor_module.STATUS_CHECK_S = previous
    assert 0 < len(outbox_lines(outbox)) < len(users) - 3


def test_a_provider_that_cannot_open_claims_nothing(sqlite_store: StateStore, tmp_path: Path, users: list[str], monkeypatch) -> None:
    monkeypatch.delenv("NO_SUCH_TOKEN", raising=False)
    providers = {"push": {"type": "gateway", "url": "http://127.0.0.1:9/send", "token_env": "NO_SUCH_TOKEN"}}
    setup(sqlite_store, tmp_path, platform=platform_body(providers=providers))
    summary, events = run_at(sqlite_store, tmp_path, at(1, 10))
    assert summary.errors and "NO_SUCH_TOKEN" in summary.errors[0]
    assert not [r for r in Ledger(sqlite_store).rows("t1") if r["status"] == "pending"]
    assert Ledger(sqlite_store).claim_holders("t1", "once") == set()


def test_a_failure_mid_batch_gives_the_claim_back(sqlite_store: StateStore, tmp_path: Path, users: list[str]) -> None:
    from engine.delivery.providers import open_provider

    outbox = setup(sqlite_store, tmp_path, platform=platform_body(outbox=tmp_path / "outbox", batch_size=100))
    calls = []

    def flaky(channel, platform):
        provider = open_provider(channel, platform, tmp_path)
        send = provider.send

        def once_broken(messages):
            calls.append(len(messages))
            if len(calls) == 2:
                raise RuntimeError("disk on fire")
            return send(messages)

        provider.send = once_broken
        return provider

    with pytest.raises(RuntimeError):
        run_at(sqlite_store, tmp_path, at(1, 10), providers=flaky)
    assert len(outbox_lines(outbox)) == 97  # the first batch: 100 users, 3 of them not sendable
    assert Ledger(sqlite_store).claim_holders("t1", "once") == {None}  # released, not stuck
    run_at(sqlite_store, tmp_path, at(1, 10, 5))
    sent = [line["user_id"] for line in outbox_lines(outbox)]
    assert len(sent) == len(set(sent)) == len(users) - 3


def test_only_the_tasks_asked_for(sqlite_store: StateStore, tmp_path: Path, users: list[str]) -> None:
    outbox = setup(sqlite_store, tmp_path, tasks={"t1": task_body(), "t2": task_body()})
    run_at(sqlite_store, tmp_path, at(1, 10), tasks=["t2"])
    assert {line["task"] for line in outbox_lines(outbox)} == {"t2"}


def test_a_completed_task_whose_definition_is_gone_still_closes(sqlite_store: StateStore, tmp_path: Path, users: list[str]) -> None:
    setup(sqlite_store, tmp_path, platform=platform_body(outbox=tmp_path / "outbox", batch_size=50, rates={"push": 100}))
    run_at(sqlite_store, tmp_path, at(1, 11, 29, 59))  # one second of sending, then the window closed
    meta = sqlite_store.meta()
    with sqlite_store.transaction(meta.lineage, meta.serial) as tx:  # the task file and its creative deleted
        tx.delete_resources(["creative.cr-a", "audience.everyone"])
        from engine.state import TaskStateWrite

        tx.set_task_states([TaskStateWrite("t1", "completed", "digest-t1")])
        tx.append_history(approval=None, summary={}, changes=[])
    summary, events = run_at(sqlite_store, tmp_path, at(1, 12))
    assert not summary.errors
    report = task_report(sqlite_store, "t1")
    assert report.occurrences[0].state == "closed" and report.totals["pending"] == 0
    assert any("closed without recording" in e.get("note", "") for e in events.events)
