"""The state lock, exercised with real separate processes (see holder_process.py)."""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

import pytest

from engine.state import LockNotFound, LockStillHeld, StaleState, StateLocked, StateStore


def test_a_second_process_is_told_who_holds_the_lock(state_store: StateStore, state_url: str, spawn_holder) -> None:
    holder = spawn_holder(state_url, "lock", "--operation", "apply")
    with pytest.raises(StateLocked) as caught:
        with state_store.lock("apply"):
            pytest.fail("got a lock another process holds")
    info = caught.value.holder
    assert info is not None
    assert (info.pid, info.operation, info.lock_id, info.held) == (holder.pid, "apply", holder.ready, True)
    message = str(caught.value)
    assert f"pid {holder.pid} (apply)" in message
    assert holder.ready in message
    assert "\n" not in message
    assert state_store.lock_holder() == info


def test_lock_is_released_at_the_end_of_the_block(state_store: StateStore, state_url: str, tmp_path: Path) -> None:
    with state_store.lock("apply") as info:
        assert state_store.lock_holder() == info
        assert info.pid == os.getpid()
    assert state_store.lock_holder() is None
    with StateStore.open(state_url, tmp_path) as other, other.lock("apply"):
        pass


def test_lock_is_released_when_the_block_raises(state_store: StateStore) -> None:
    with pytest.raises(KeyError):
        with state_store.lock("apply"):
            raise KeyError("x")
    assert state_store.lock_holder() is None
    with state_store.lock("apply"):
        pass


def test_timeout_waits_for_the_holder_to_finish(state_store: StateStore, state_url: str, spawn_holder) -> None:
    holder = spawn_holder(state_url, "lock", "--hold", "1.5")
    started = time.monotonic()
    with state_store.lock("apply", timeout=30) as info:
        waited = time.monotonic() - started
        assert info.pid == os.getpid()
    assert holder.wait() == 0
    assert 0.5 < waited < 20


def test_timeout_gives_up_naming_the_holder(state_store: StateStore, state_url: str, spawn_holder) -> None:
    holder = spawn_holder(state_url, "lock")
    started = time.monotonic()
    with pytest.raises(StateLocked, match=rf"pid {holder.pid} .*waited 1s"):
        with state_store.lock("apply", timeout=1):
            pass
    assert 0.9 < time.monotonic() - started < 10


def test_a_sigkilled_holder_does_not_block_the_next_lock(
    state_store: StateStore, state_url: str, spawn_holder
) -> None:
    holder = spawn_holder(state_url, "lock")
    holder.kill()
    # PostgreSQL ends the dead client's session (and its advisory lock) asynchronously: allow it a moment
    deadline = time.monotonic() + 10
    while (current := state_store.lock_holder()) is not None and current.held and time.monotonic() < deadline:
        time.sleep(0.05)
    stale = state_store.lock_holder()
    assert stale is not None and stale.lock_id == holder.ready and stale.held is False  # row left behind
    with state_store.lock("apply") as info:  # no timeout: nothing holds it any more
        assert state_store.lock_holder() == info  # the stale row was overwritten
    assert state_store.lock_holder() is None


def test_unlock_breaks_a_stale_holder_row(state_store: StateStore, state_url: str, spawn_holder) -> None:
    holder = spawn_holder(state_url, "lock")
    holder.kill()
    deadline = time.monotonic() + 10
    while state_store.lock_holder().held and time.monotonic() < deadline:
        time.sleep(0.05)
    removed = state_store.unlock(holder.ready)
    assert (removed.lock_id, removed.pid) == (holder.ready, holder.pid)
    assert state_store.lock_holder() is None


def test_unlock_needs_the_current_lock_id(state_store: StateStore, state_url: str, spawn_holder) -> None:
    with pytest.raises(LockNotFound, match="not locked"):
        state_store.unlock(str(uuid.uuid4()))
    holder = spawn_holder(state_url, "lock")
    with pytest.raises(LockNotFound, match=f"locked by .*pid {holder.pid}"):
        state_store.unlock(str(uuid.uuid4()))


def test_sqlite_unlock_refuses_a_live_holder(tmp_path: Path, spawn_holder) -> None:
    url = "sqlite:///.campaigns/state.db"
    holder = spawn_holder(url, "lock")
    with StateStore.open(url, tmp_path) as store:
        with pytest.raises(LockStillHeld, match=f"running process: .*pid {holder.pid}"):
            store.unlock(holder.ready)
        assert store.lock_holder().lock_id == holder.ready
        assert holder.proc.poll() is None


@pytest.mark.postgres
def test_postgres_unlock_ends_the_session_holding_the_lock(pg_database_url: str, tmp_path: Path, spawn_holder) -> None:
    url = f"{pg_database_url}?schema=u_{uuid.uuid4().hex[:10]}"
    holder = spawn_holder(url, "lock")
    with StateStore.open(url, tmp_path) as store:
        removed = store.unlock(holder.ready)
        assert removed.pid == holder.pid
        assert store.lock_holder() is None
        with store.lock("apply"):
            pass


@pytest.mark.postgres
def test_postgres_lock_key_is_per_schema(pg_database_url: str, tmp_path: Path) -> None:
    one = StateStore.open(f"{pg_database_url}?schema=k_{uuid.uuid4().hex[:10]}", tmp_path)
    two = StateStore.open(f"{pg_database_url}?schema=k_{uuid.uuid4().hex[:10]}", tmp_path)
    try:
        with one.lock("apply"), two.lock("apply"):
            assert one.lock_holder().held and two.lock_holder().held
    finally:
        one.close()
        two.close()


def test_reads_do_not_wait_for_the_lock(state_store: StateStore) -> None:
    # a reader (plan) must not wait for the lock; only writers serialise
    with state_store.lock("apply"):
        errors: list[BaseException] = []

        def read() -> None:
            try:
                state_store.meta()
                state_store.resource_digests()
            except BaseException as problem:  # noqa: BLE001
                errors.append(problem)

        reader = threading.Thread(target=read)
        reader.start()
        reader.join(10)
        assert not reader.is_alive() and errors == []


def test_an_apply_killed_mid_transaction_leaves_the_old_state(
    state_store: StateStore, state_url: str, spawn_holder
) -> None:
    before = state_store.meta()
    holder = spawn_holder(state_url, "transaction", "--resources", "5000")
    assert holder.ready == str(before.serial + 1)  # it is inside its transaction, uncommitted
    assert state_store.meta() == before  # readers see the old state meanwhile
    holder.kill()
    assert state_store.meta() == before
    assert state_store.resource_digests() == {}
    with state_store.lock("apply", timeout=10):
        with state_store.transaction(before.lineage, before.serial) as tx:
            tx.put_resources([])
    assert state_store.meta().serial == before.serial + 1


def test_a_writer_racing_an_open_apply_in_another_process_gets_stale_state(
    state_store: StateStore, state_url: str, spawn_holder
) -> None:
    # No lock on our side: the compare-and-swap alone must stop a second apply at the same serial.
    before = state_store.meta()
    holder = spawn_holder(state_url, "transaction", "--resources", "10", "--hold", "1")
    with pytest.raises(StaleState, match=f"serial is {before.serial + 1}, expected {before.serial}"):
        with state_store.transaction(before.lineage, before.serial) as tx:  # waits for the other to commit
            tx.put_resources([])
    assert holder.wait() == 0
    assert state_store.meta().serial == before.serial + 1
    assert len(state_store.resource_digests()) == 10


@pytest.mark.postgres
def test_postgres_unlock_aborts_the_holders_open_transaction(
    pg_database_url: str, tmp_path: Path, spawn_holder
) -> None:
    url = f"{pg_database_url}?schema=u_{uuid.uuid4().hex[:10]}"
    with StateStore.open(url, tmp_path) as store:
        before = store.meta()
        holder = spawn_holder(url, "transaction", "--resources", "50", "--hold", "2")
        store.unlock(store.lock_holder().lock_id)
        assert store.meta() == before
        assert holder.wait(timeout=20) != 0  # its commit fails: its session was ended under it
        assert "state database error" in holder.proc.stderr.read()
        assert store.meta() == before
        assert store.resource_digests() == {}
        with store.lock("apply"):
            with store.transaction(before.lineage, before.serial) as tx:
                tx.put_resources([])
        assert store.meta().serial == before.serial + 1
