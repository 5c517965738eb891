"""Pilot-test records: what counts as a passing test of a content digest."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from engine.state import PilotResult, StateStore, TaskStateWrite

OK = PilotResult("alice", "push", True, "creative flash-a delivered")
FAILED = PilotResult("bob", "push", False, "missing variable first_name")


def test_a_run_passes_only_when_every_result_passed(state_store: StateStore) -> None:
    state_store.record_pilot_test("flash-sale", "d1", [OK, FAILED])
    state_store.record_pilot_test("flash-sale", "d2", [OK, PilotResult("carol", "sms", True)])
    state_store.record_pilot_test("welcome", "w1", [FAILED])
    assert state_store.passing_pilot_digests() == {"flash-sale": {"d2"}}


def test_a_later_passing_run_of_the_same_content_counts(state_store: StateStore) -> None:
    state_store.record_pilot_test("flash-sale", "d1", [FAILED])
    assert state_store.passing_pilot_digests() == {}
    state_store.record_pilot_test("flash-sale", "d1", [OK])
    assert state_store.passing_pilot_digests() == {"flash-sale": {"d1"}}


def test_runs_are_listed_oldest_first_with_their_results(state_store: StateStore) -> None:
    t0 = datetime(2025, 12, 1, 10, 0, tzinfo=timezone.utc)
    state_store.record_pilot_test("flash-sale", "d1", [OK, FAILED], now=t0)
    state_store.record_pilot_test("flash-sale", "d2", [OK], now=t0 + timedelta(minutes=5))
    state_store.record_pilot_test("welcome", "w1", [OK], now=t0 + timedelta(minutes=1))

    runs = state_store.pilot_tests("flash-sale")
    assert [(r.content_digest, r.passed, r.tested_at) for r in runs] == [
        ("d1", False, t0),
        ("d2", True, t0 + timedelta(minutes=5)),
    ]
    assert runs[0].results == (OK, FAILED)
    assert [r.task_id for r in state_store.pilot_tests()] == ["flash-sale", "welcome", "flash-sale"]
    assert [r.content_digest for r in state_store.pilot_tests("flash-sale", "d2")] == ["d2"]


def test_a_pilot_test_moves_a_draft_to_testing_without_an_apply(state_store: StateStore) -> None:
    meta = state_store.meta()
    with state_store.transaction(meta.lineage, meta.serial) as tx:
        tx.set_task_states([TaskStateWrite("flash-sale", "draft", "d0"), TaskStateWrite("live", "running", "l0")])
    state_store.record_pilot_test("flash-sale", "d1", [OK])
    state_store.record_pilot_test("live", "l1", [OK])
    states = state_store.task_states()
    assert (states["flash-sale"].status, states["flash-sale"].content_digest) == ("testing", "d1")
    assert (states["live"].status, states["live"].content_digest) == ("running", "l0")
    assert state_store.meta().serial == 1  # not an apply


def test_mark_testing_false_leaves_the_status(state_store: StateStore) -> None:
    meta = state_store.meta()
    with state_store.transaction(meta.lineage, meta.serial) as tx:
        tx.set_task_states([TaskStateWrite("flash-sale", "draft", "d0")])
    state_store.record_pilot_test("flash-sale", "d1", [OK], mark_testing=False)
    assert state_store.task_states()["flash-sale"].status == "draft"


def test_a_run_without_results_is_refused(state_store: StateStore) -> None:
    with pytest.raises(ValueError, match="at least one result"):
        state_store.record_pilot_test("flash-sale", "d1", [])
    assert state_store.pilot_tests() == []
