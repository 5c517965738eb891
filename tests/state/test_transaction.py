"""The apply transaction: all or nothing, serial + 1, compare-and-swap; and what it stores."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event

from engine.state import (
    Approval,
    ResourceVersion,
    StaleState,
    StateStore,
    TaskStateWrite,
    content_digest,
)


def task(i: int, **extra) -> ResourceVersion:
    return ResourceVersion(f"task.t{i}", "task", f"t{i}", {"title": f"Task {i}", "channel": "push", **extra})


def apply(store: StateStore, *, put=(), delete=(), states=(), now: datetime | None = None) -> int:
    meta = store.meta()
    with store.transaction(meta.lineage, meta.serial, now=now) as tx:
        tx.put_resources(put)
        tx.delete_resources(delete)
        tx.set_task_states(states)
        tx.append_history(approval=None, summary={"put": len(put)}, changes=[])
    return tx.serial


def test_a_transaction_bumps_the_serial_by_exactly_one(state_store: StateStore) -> None:
    lineage = state_store.meta().lineage
    for expected in (1, 2, 3):
        assert apply(state_store, put=[task(expected)]) == expected
        assert state_store.meta().serial == expected
        assert state_store.meta().lineage == lineage


def test_an_empty_transaction_still_counts_as_an_apply(state_store: StateStore) -> None:
    meta = state_store.meta()
    with state_store.transaction(meta.lineage, meta.serial):
        pass
    assert state_store.meta().serial == 1


def test_resources_round_trip_with_digest_and_serial_of_last_change(state_store: StateStore) -> None:
    a, b = task(1, body={"nested": ["x", 1, None, True]}), task(2)
    apply(state_store, put=[a, b])
    changed_b = task(2, title="Changed")
    apply(state_store, put=[a, changed_b])  # a unchanged: keeps serial 1

    stored = state_store.resources()
    assert set(stored) == {"task.t1", "task.t2"}
    assert stored["task.t1"].body == a.body
    assert stored["task.t1"].digest == content_digest(a.body) == a.digest
    assert stored["task.t1"].serial == 1
    assert stored["task.t2"].body["title"] == "Changed"
    assert stored["task.t2"].serial == 2
    assert (stored["task.t2"].kind, stored["task.t2"].id) == ("task", "t2")
    assert state_store.resource_digests() == {"task.t1": a.digest, "task.t2": changed_b.digest}
    assert state_store.resource("task.t2").digest == changed_b.digest
    assert state_store.resource("task.nope") is None
    assert set(state_store.resources(["task.t2", "task.nope"])) == {"task.t2"}


def test_resources_can_be_listed_by_kind(state_store: StateStore) -> None:
    creative = ResourceVersion("creative.c1", "creative", "c1", {"title": "Hi"})
    apply(state_store, put=[task(1), creative])
    assert set(state_store.resources(kind="creative")) == {"creative.c1"}


def test_put_reports_only_what_changed(state_store: StateStore) -> None:
    meta = state_store.meta()
    with state_store.transaction(meta.lineage, meta.serial) as tx:
        assert tx.put_resources([task(1), task(2)]) == 2
    meta = state_store.meta()
    with state_store.transaction(meta.lineage, meta.serial) as tx:
        assert tx.put_resources([task(1), task(2, title="new")]) == 1


def test_the_same_address_twice_is_refused(state_store: StateStore) -> None:
    meta = state_store.meta()
    with pytest.raises(ValueError, match="task.t1"):
        with state_store.transaction(meta.lineage, meta.serial) as tx:
            tx.put_resources([task(1), task(1, title="other")])
    assert state_store.meta().serial == 0


def test_deleted_resources_are_gone(state_store: StateStore) -> None:
    apply(state_store, put=[task(1), task(2)])
    meta = state_store.meta()
    with state_store.transaction(meta.lineage, meta.serial) as tx:
        assert tx.delete_resources(["task.t1", "task.never"]) == 1
    assert set(state_store.resource_digests()) == {"task.t2"}


def test_a_failing_transaction_changes_nothing(state_store: StateStore) -> None:
    apply(state_store, put=[task(1)], states=[TaskStateWrite("t1", "draft", "d1")])
    before = (state_store.meta(), state_store.resources(), state_store.task_states(), state_store.history())
    meta = before[0]
    with pytest.raises(RuntimeError, match="boom"):
        with state_store.transaction(meta.lineage, meta.serial) as tx:
            tx.put_resources([task(1, title="changed"), task(2)])
            tx.delete_resources(["task.t1"])
            tx.set_task_states([TaskStateWrite("t1", "running", "d2")])
            tx.append_history(approval=None, summary={}, changes=[])
            raise RuntimeError("boom")
    after = (state_store.meta(), state_store.resources(), state_store.task_states(), state_store.history())
    assert after[0] == before[0]
    assert after[1] == before[1]
    assert after[2] == before[2]
    assert [h.serial for h in after[3]] == [h.serial for h in before[3]] == [1]
    # and the next apply at the old serial goes through
    assert apply(state_store, put=[task(2)]) == 2


def test_compare_and_swap_refuses_a_stale_serial(state_store: StateStore) -> None:
    stale = state_store.meta()
    apply(state_store, put=[task(1)])  # someone else applied meanwhile
    with pytest.raises(StaleState, match="serial is 1, expected 0") as caught:
        with state_store.transaction(stale.lineage, stale.serial) as tx:
            tx.put_resources([task(2)])
    assert caught.value.actual_serial == 1
    assert state_store.meta().serial == 1
    assert set(state_store.resource_digests()) == {"task.t1"}


def test_compare_and_swap_refuses_another_lineage(state_store: StateStore, make_state_url, tmp_path: Path) -> None:
    with StateStore.open(make_state_url(), tmp_path) as other:
        foreign = other.meta()
    with pytest.raises(StaleState, match="a different state"):
        with state_store.transaction(foreign.lineage, 0):
            pass
    assert state_store.meta().serial == 0


def test_two_stores_racing_on_one_serial_only_one_commits(state_url: str, tmp_path: Path) -> None:
    with StateStore.open(state_url, tmp_path) as one, StateStore.open(state_url, tmp_path) as two:
        meta = one.meta()
        with one.transaction(meta.lineage, meta.serial) as tx:
            tx.put_resources([task(1)])
        with pytest.raises(StaleState):
            with two.transaction(meta.lineage, meta.serial) as tx:
                tx.put_resources([task(2)])
        assert two.meta().serial == 1
        assert set(two.resource_digests()) == {"task.t1"}


def test_task_states_keep_since_until_the_status_changes(state_store: StateStore) -> None:
    t0 = datetime(2025, 1, 1, 9, 0, tzinfo=timezone.utc)
    apply(state_store, states=[TaskStateWrite("t1", "draft", "d1")], now=t0)
    apply(state_store, states=[TaskStateWrite("t1", "draft", "d2")], now=t0 + timedelta(hours=1))
    state = state_store.task_states()["t1"]
    assert (state.status, state.content_digest, state.since, state.updated_at, state.serial) == (
        "draft",
        "d2",
        t0,
        t0 + timedelta(hours=1),
        2,
    )
    apply(state_store, states=[TaskStateWrite("t1", "running", "d2")], now=t0 + timedelta(hours=2))
    state = state_store.task_states()["t1"]
    assert state.status == "running"
    assert state.since == t0 + timedelta(hours=2)
    assert state.since.tzinfo is not None


def test_unknown_task_status_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown status"):
        TaskStateWrite("t1", "active")


def test_history_records_approval_evidence_in_order(state_store: StateStore) -> None:
    merged = Approval(
        kind="github",
        approved_by="octocat",
        reason="Reason to run: December flash sale",
        pr_number=2,
        author="Codertocat",
        merge_commit="c4295bd74fb0f4fda03689c3df3f2803b658fd85",
        pr_title="Launch the December flash-sale push task",
        pr_url="https://github.com/Codertocat/Hello-World/pull/2",
    )
    manual = Approval(kind="manual", approved_by="ops-lead", reason="hotfix")
    changes = [{"address": "task.t1", "action": "create", "diff": {"title": [None, "Task 1"]}}]
    for approval in (merged, manual):
        meta = state_store.meta()
        with state_store.transaction(meta.lineage, meta.serial) as tx:
            tx.put_resources([task(meta.serial)])
            tx.append_history(approval=approval, summary={"create": 1}, changes=changes, applied_by="ci@runner-3")

    first, second = state_store.history()
    assert (first.serial, second.serial) == (1, 2)
    assert first.lineage == state_store.meta().lineage
    assert first.approval == merged
    assert first.approval.merged_by == "octocat"
    assert second.approval == manual and second.approval.merged_by is None
    assert first.applied_by == "ci@runner-3"
    assert first.summary == {"create": 1}
    assert first.changes == changes
    assert first.applied_at <= second.applied_at
    assert [h.serial for h in state_store.history(limit=1)] == [2]
    assert state_store.history(with_changes=False)[0].changes == []


def test_one_history_entry_per_apply(state_store: StateStore) -> None:
    meta = state_store.meta()
    with pytest.raises(RuntimeError, match="one history entry"):
        with state_store.transaction(meta.lineage, meta.serial) as tx:
            tx.append_history(approval=None, summary={}, changes=[])
            tx.append_history(approval=None, summary={}, changes=[])
    assert state_store.history() == []


def test_the_transaction_object_is_dead_after_the_block(state_store: StateStore) -> None:
    meta = state_store.meta()
    with state_store.transaction(meta.lineage, meta.serial) as tx:
        pass
    with pytest.raises(RuntimeError, match="over"):
        tx.put_resources([task(1)])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(st.text(min_size=1, max_size=10), json_values, max_size=6))
def test_any_json_body_round_trips_with_a_stable_digest(state_store: StateStore, body: dict) -> None:
    version = ResourceVersion("creative.x", "creative", "x", body)
    apply(state_store, put=[version])
    stored = state_store.resource("creative.x")
    assert stored.body == body
    assert stored.digest == content_digest(body) == version.digest


def test_non_json_bodies_are_refused_before_writing() -> None:
    with pytest.raises(ValueError, match="task.t1: body is not plain JSON"):
        ResourceVersion("task.t1", "task", "t1", {"start": datetime(2025, 1, 1)})


@pytest.mark.slow
def test_twenty_thousand_resources_in_one_transaction_take_few_statements(state_store: StateStore) -> None:
    """Writing and reading 20,000 resources is batched: a per-row round trip would be 20,000 statements."""
    versions = [
        ResourceVersion(f"task.t{i}", "task", f"t{i}", {"title": f"Task {i}", "text": "x" * 300, "n": i})
        for i in range(20_000)
    ]
    meta = state_store.meta()
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement)

    event.listen(state_store._engine, "before_cursor_execute", count)
    try:
        with state_store.transaction(meta.lineage, meta.serial) as tx:
            assert tx.put_resources(versions) == 20_000
        written = len(statements)
        statements.clear()
        digests = state_store.resource_digests()
        read = len(statements)
    finally:
        event.remove(state_store._engine, "before_cursor_execute", count)
    assert len(digests) == 20_000 and digests["task.t19999"] == versions[-1].digest
    assert 0 < written < 200, written
    assert 0 < read < 20, read
