"""A finished plan is a value: its changes cannot be reassigned, and what apply adds to a plan it
refuses (the missing approval) is a new plan, the one it was given left as it was."""

from __future__ import annotations

import dataclasses

import pytest

from engine.plan.model import NEEDS_APPROVAL, Blocker, Change, ChangeDraft, Plan, StatusChange


def _plan() -> Plan:
    created = Change("task.a", "task", "a", "create", None, "b" * 64, status=StatusChange(None, "running"))
    return Plan("l", 3, "d" * 64, "2026-01-01T00:00:00Z", "s", [created], noops=[("creative.x", "c" * 64, None)])


def test_a_change_cannot_be_reassigned() -> None:
    change = _plan().changes[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        change.action = "delete"


def test_with_blocker_is_a_new_plan_and_leaves_the_old_one_alone() -> None:
    plan = _plan()
    blocked = plan.with_blocker(Blocker(NEEDS_APPROVAL, "needs approval"))
    assert [b.code for b in blocked.change("task.a").blockers] == [NEEDS_APPROVAL]
    assert plan.change("task.a").blockers == []
    assert blocked.blockers() and not plan.blockers()
    assert blocked.summary() == plan.summary() == {"create": 1, "update": 0, "delete": 0, "no-op": 1}
    assert (blocked.lineage, blocked.serial, blocked.repository_digest) == (plan.lineage, plan.serial, plan.repository_digest)


def test_a_draft_freezes_into_the_change_it_describes() -> None:
    draft = ChangeDraft("task.a", "task", "a", "no-op", "b" * 64, "b" * 64)
    draft.action = "update"
    draft.notes.append("its content changes with creative.x")
    change = draft.freeze()
    assert isinstance(change, Change)
    assert change == Change("task.a", "task", "a", "update", "b" * 64, "b" * 64, notes=["its content changes with creative.x"])


def test_a_no_op_is_the_change_the_constructor_makes() -> None:
    status = StatusChange("running", "running")
    quick = Change.no_op("task.a", "task", "a", "d" * 64, status)
    assert quick == Change("task.a", "task", "a", "no-op", before_digest="d" * 64, after_digest="d" * 64, status=status)
    assert list(vars(quick)) == [f.name for f in dataclasses.fields(Change)]
