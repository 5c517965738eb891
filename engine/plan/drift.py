"""Drift: what the state holds that git does not say, shown at the top of every plan.

Two kinds, each a JSON object with ``kind`` and a one-line ``message`` (the text plan prints it
after ``! ``):

- ``emergency-pause``: a task held by ``campaigns pause`` (``task``, ``address``, ``by``, ``at``,
  ``reason``); it stays paused through applies until ``campaigns resume``;
- ``apply-failed``: the repository is ahead of the state: an apply with approval evidence (the
  merged pull request's) was refused, and no apply has succeeded since (``pr_number``,
  ``merge_commit``, ``at``, ``reason``). Re-running that pull request's apply workflow once the
  blocker is cleared applies with the same approval.

An apply that never ran leaves no trace in the state; ``.github/workflows/drift.yml`` finds it by
planning ``main`` against the state on a schedule (its changes are the unapplied ones).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.state import control
from engine.state.records import utc_iso

if TYPE_CHECKING:
    from engine.state import StateStore

EMERGENCY_PAUSE = "emergency-pause"
APPLY_FAILED = "apply-failed"


def pause_entry(pause: control.EmergencyPause) -> dict[str, Any]:
    at = utc_iso(pause.paused_at)
    task = pause.task_id
    return {
        "kind": EMERGENCY_PAUSE,
        "address": f"task.{task}",
        "task": task,
        "by": pause.paused_by,
        "at": at,
        "reason": pause.reason,
        "message": f"task.{task} paused outside git by {pause.paused_by} at {at}: {pause.reason} (campaigns resume {task})",
    }


def failure_entry(failure: control.ApplyFailure) -> dict[str, Any]:
    at = utc_iso(failure.failed_at)
    if failure.pr_number is not None:
        which = f"the apply of pull request #{failure.pr_number}"
        if failure.merge_commit:
            which += f" (merge {failure.merge_commit[:10]})"
        again = "clear the blocker, then re-run that pull request's apply workflow"
    else:
        which = f"an apply approved by {failure.approved_by}" if failure.approved_by else "an apply"
        again = "clear the blocker, then apply again"
    return {
        "kind": APPLY_FAILED,
        "pr_number": failure.pr_number,
        "merge_commit": failure.merge_commit,
        "approved_by": failure.approved_by,
        "at": at,
        "reason": failure.message,
        "details": list(failure.details),
        "message": f"the repository is ahead of the state: {which} was refused at {at}: {failure.message} ({again})",
    }


def read_drift(store: StateStore) -> list[dict[str, Any]]:
    """Every drift entry of the state: emergency pauses by task, then failed applies, oldest first."""
    entries = [pause_entry(pause) for pause in control.active_pauses(store).values()]
    entries.extend(failure_entry(failure) for failure in control.failed_applies(store))
    return entries
