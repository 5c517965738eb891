"""The ledger's claim protocol on SQLite and PostgreSQL: rows before sends, take-over of a dead
executor's batch with the ids it recorded, live executors left alone, releases, expiry, counts."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from delivery_state import import_users, outbox_lines, platform_body, seed, task_body, write_users

from engine.clock import Clock
from engine.delivery.executor import Executor
from engine.delivery.ids import message_id
from engine.delivery.ledger import Ledger, NewRow, Outcome, Presence
from engine.delivery.report import task_report
from engine.state import StateStore

MANILA = dt.timezone(dt.timedelta(hours=8))
IN_WINDOW = dt.datetime(2026, 12, 1, 10, 0, tzinfo=MANILA)
AFTER = dt.datetime(2026, 12, 1, 12, 0, tzinfo=MANILA)
FINISH = dt.datetime(2026, 12, 1, 11, 30, tzinfo=MANILA).timestamp()


@dataclass(frozen=True)
class M:
    user_id: str
    attributes: dict
    opt_out: frozenset = frozenset()


def members(n: int, prefix: str = "u") -> list[M]:
    return [M(f"{prefix}{i:05d}", {"user_id": f"{prefix}{i:05d}", "first_name": f"N{i}", "points": i}) for i in range(n)]


def pending_rows(task: str, key: str):
    def build(batch, _sent_today):
        return [NewRow(m.user_id, message_id(task, key, m.user_id), "pending", "cr-a", "ph/2026-12-01") for m in batch]

    return build


def take_from(items: list[M]):
    def take(after, limit):
        rest = [m for m in items if after is None or m.user_id > after]
        return rest[:limit], len(rest) <= limit

    return take


def prepared(store: StateStore, tmp_path: Path, count: int = 40) -> Path:
    write_users(tmp_path / "users.csv", count)
    import_users(store, tmp_path / "users.csv")
    outbox = tmp_path / "outbox"
    seed(store, platform=platform_body(outbox=outbox, batch_size=10), tasks={"t1": task_body()})
    return outbox


def run(store: StateStore, tmp_path: Path, moment: dt.datetime = IN_WINDOW):
    with Executor(store, tmp_path, clock=Clock(moment)) as executor:
        return executor.run_pass()


def test_a_dead_executors_batch_is_sent_again_with_its_recorded_ids(state_store: StateStore, tmp_path: Path) -> None:
    outbox = prepared(state_store, tmp_path)
    dead = Ledger(state_store, executor="dead0000")  # never held its presence: as if killed -9
    dead.open_occurrence("t1", "once", site="ph", channel="push", finish_at=FINISH, now=0)
    # the crashed executor claimed 10 users (rows committed) with ids of its own making
    odd = lambda task, key, user: "crash-" + user  # noqa: E731 - ids that differ from today's scheme
    result = dead.claim(
        "t1", "once", limit=10, now=1.0, take=take_from(members(40)),
        build=lambda batch, _: [NewRow(m.user_id, odd("t1", "once", m.user_id), "pending", "cr-a", "ph/2026-12-01") for m in batch],
    )
    assert result is not None and result.claim is not None
    run(state_store, tmp_path)
    lines = outbox_lines(outbox)
    assert sorted(line["user_id"] for line in lines) == [f"u{i:05d}" for i in range(40)]
    by_user = {line["user_id"]: line["message_id"] for line in lines}
    assert all(by_user[f"u{i:05d}"] == f"crash-u{i:05d}" for i in range(10))  # the recorded ids, not new ones
    assert all(by_user[f"u{i:05d}"] == message_id("t1", "once", f"u{i:05d}") for i in range(10, 40))
    report = task_report(state_store, "t1")
    assert report.occurrences[0].state == "closed" and report.totals["sent"] == 40


def test_a_live_executors_batch_is_left_to_it(state_store: StateStore, tmp_path: Path) -> None:
    outbox = prepared(state_store, tmp_path)
    other = Ledger(state_store, executor="alive000")
    presence = Presence(state_store, "alive000")
    presence.hold()
    try:
        other.open_occurrence("t1", "once", site="ph", channel="push", finish_at=FINISH, now=0)
        held = other.claim("t1", "once", limit=10, now=1.0, take=take_from(members(40)), build=pending_rows("t1", "once"))
        run(state_store, tmp_path)
        assert sorted(line["user_id"] for line in outbox_lines(outbox)) == [f"u{i:05d}" for i in range(10, 40)]
        assert task_report(state_store, "t1").occurrences[0].state == "fanned"
        run(state_store, tmp_path, AFTER)  # over, but the batch is still held: not expired under it
        assert task_report(state_store, "t1").occurrences[0].counts.pending == 10
        done = other.finish(held.claim, 10, [], 2.0)
        assert done.sent == 10 and done.closed and not done.lost
    finally:
        presence.release()
    assert task_report(state_store, "t1").totals == {"sent": 40, "failed": 0, "expired": 0, "capped": 0, "suppressed": 0, "pending": 0, "unconfirmed": 0}


def test_finishing_a_batch_someone_took_over_counts_each_row_once(state_store: StateStore) -> None:
    first = Ledger(state_store, executor="first000")
    second = Ledger(state_store, executor="second00")
    first.open_occurrence("t1", "once", site="ph", channel="push", finish_at=FINISH, now=0)
    claim = first.claim("t1", "once", limit=5, now=1.0, take=take_from(members(5)), build=pending_rows("t1", "once")).claim
    [taken] = second.take_over("t1", "once", {"first000"}, now=2.0)  # first looked dead (lost its connection)
    assert [r.message_id for r in taken.rows] == [r.message_id for r in claim.rows]
    mine = first.finish(claim, 5, [], 2.0)
    assert mine.lost and mine.sent == 5
    theirs = second.finish(taken, 5, [Outcome("u00001", "failed", 3, "late")], 3.0)
    assert theirs.sent == 0 and theirs.failed == 0 and theirs.closed
    assert first.progress()[("t1", "once")].counts == first.counted()[("t1", "once")]


def test_an_unsent_tail_is_released_and_sent_by_the_next_pass(state_store: StateStore, tmp_path: Path) -> None:
    outbox = prepared(state_store, tmp_path, count=10)
    ledger = Ledger(state_store, executor="stopped0")
    presence = Presence(state_store, "stopped0")
    presence.hold()
    try:
        ledger.open_occurrence("t1", "once", site="ph", channel="push", finish_at=FINISH, now=0)
        result = ledger.claim("t1", "once", limit=10, now=1.0, take=take_from(members(10)), build=pending_rows("t1", "once"))
        done = ledger.finish(result.claim, 4, [Outcome("u00002", "failed", 1, "refused")], 2.0)
        assert (done.sent, done.failed, done.unsent) == (3, 1, 6)
        assert ledger.claim_holders("t1", "once") == {None}
        run(state_store, tmp_path)  # this executor is alive, yet its released tail is anyone's
    finally:
        presence.release()
    assert sorted(line["user_id"] for line in outbox_lines(outbox)) == [f"u{i:05d}" for i in range(4, 10)]
    assert task_report(state_store, "t1").totals["sent"] == 9


def test_expiry_of_released_and_dead_batches(state_store: StateStore, tmp_path: Path) -> None:
    prepared(state_store, tmp_path, count=30)
    dead = Ledger(state_store, executor="dead1111")
    dead.open_occurrence("t1", "once", site="ph", channel="push", finish_at=FINISH, now=0)
    first = dead.claim("t1", "once", limit=10, now=1.0, take=take_from(members(30)), build=pending_rows("t1", "once"))
    dead.finish(first.claim, 0, [], 1.5)  # released unsent
    dead.claim("t1", "once", limit=10, now=2.0, take=take_from(members(30)), build=pending_rows("t1", "once"))
    run(state_store, tmp_path, AFTER)
    rows = {r["user_id"]: r for r in Ledger(state_store).rows("t1", "once")}
    assert len(rows) == 30
    # released unsent: expired; held by the dead executor (maybe handed to the provider): unconfirmed
    assert {r["user_id"] for r in rows.values() if r["status"] == "unconfirmed"} == {f"u{i:05d}" for i in range(10, 20)}
    assert {r["status"] for r in rows.values() if r["status"] != "unconfirmed"} == {"expired"}
    assert "before it was sent" in rows["u00000"]["error"]
    assert "may have been delivered" in rows["u00015"]["error"]
    assert rows["u00015"]["cap_key"] == "ph/2026-12-01" and rows["u00000"]["cap_key"] is None  # counted against the cap
    assert "not reached" in rows["u00025"]["error"]
    occurrence = task_report(state_store, "t1").occurrences[0]
    assert occurrence.state == "closed"
    assert (occurrence.counts.expired, occurrence.counts.unconfirmed, occurrence.counts.pending) == (20, 10, 0)
    assert Ledger(state_store).progress()[("t1", "once")].counts == Ledger(state_store).counted()[("t1", "once")]


def test_claims_never_overlap_and_the_occurrence_is_fanned_once(state_store: StateStore) -> None:
    a, b = Ledger(state_store, executor="aaaa0000"), Ledger(state_store, executor="bbbb0000")
    a.open_occurrence("t1", "once", site="ph", channel="push", finish_at=FINISH, now=0)
    everyone = members(25)
    seen: list[str] = []
    turn = 0
    while True:
        ledger = (a, b)[turn % 2]
        turn += 1
        result = ledger.claim("t1", "once", limit=7, now=1.0, take=take_from(everyone), build=pending_rows("t1", "once"))
        if result is None:
            break
        seen += [m.user_id for m in result.members]
        if result.exhausted:
            break
    assert seen == [m.user_id for m in everyone]
    assert a.claim("t1", "once", limit=7, now=1.0, take=take_from(everyone), build=pending_rows("t1", "once")) is None
    assert a.progress()[("t1", "once")].status == "fanned"


HOLDER = textwrap.dedent(
    """
    import sys, time
    from engine.state import StateStore
    from engine.delivery.ledger import Presence
    store = StateStore.open(sys.argv[1], sys.argv[2])
    Presence(store, sys.argv[3]).hold()
    print("READY", flush=True)
    time.sleep(120)
    """
)


def test_presence_dies_with_the_process(state_url: str, tmp_path: Path) -> None:
    store = StateStore.open(state_url, tmp_path)
    try:
        me = Presence(store, "watcher0")
        me.hold()
        child = subprocess.Popen(
            [sys.executable, "-c", HOLDER, state_url, str(tmp_path), "child000"], stdout=subprocess.PIPE, text=True
        )
        try:
            assert child.stdout is not None and child.stdout.readline().startswith("READY")
            assert me.alive({"child000", "watcher0", "never000"}) == {"child000", "watcher0"}
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
            assert me.alive({"child000"}) == set()
        finally:
            if child.poll() is None:
                child.kill()
            child.wait(timeout=10)
            child.stdout.close()
        me.release()
    finally:
        store.close()


def test_a_state_with_a_version_4_ledger_is_migrated_and_its_old_failures_are_unrecorded(
    state_url: str, tmp_path: Path, monkeypatch
) -> None:
    import engine.state.migrations as migrations

    with monkeypatch.context() as patched:  # a state written by the release before reasons
        patched.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:4])
        old = StateStore.open(state_url, tmp_path)
        try:
            prepared(old, tmp_path, count=3)
            with old.writing() as conn:
                conn.exec_driver_sql(
                    "INSERT INTO campaigns_delivery_occurrences (task_id, occurrence, site, channel, status, last_user, "
                    "finish_at, started_at, closed_at, pending, sent, failed, expired, capped, suppressed) "
                    "VALUES ('t1', 'once', 'ph', 'push', 'closed', 'u00002', 1, 0, 1, 0, 2, 1, 0, 0, 0)"
                )
                for user, status in (("u00000", "sent"), ("u00001", "sent"), ("u00002", "failed")):
                    conn.exec_driver_sql(
                        "INSERT INTO campaigns_deliveries (task_id, occurrence, user_id, message_id, status, creative, "
                        f"cap_key, attempts, at, error) VALUES ('t1', 'once', '{user}', 'm-{user}', '{status}', 'cr-a', NULL, 1, 1, 'old')"
                    )
        finally:
            old.close()
    store = StateStore.open(state_url, tmp_path)  # version 5 now
    try:
        assert store.meta().schema_version >= 5
        occurrence = task_report(store, "t1").occurrences[0]
        assert occurrence.counts.unconfirmed == 0 and occurrence.failed_by_reason == {"unrecorded": 1}
        assert [(f.user_id, f.reason, f.detail) for f in Ledger(store).failures("t1")] == [("u00002", None, "old")]
    finally:
        store.close()
