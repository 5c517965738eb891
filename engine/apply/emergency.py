"""``campaigns pause`` / ``campaigns resume``: stop a task at once, without git.

An emergency stop cannot wait for a pull request, an approval or a pilot test, so these write
straight to the state: under the state lock (briefly; ``lock_timeout`` bounds the wait behind a
running apply), one transaction per command, all named tasks or none. The pause is an override
beside the task's recorded status (``engine.state.control``): the executor stops sending within
about a second, applies keep recording what git says underneath, and the task stays held until
``resume``. Who (``--by``, else the OS user) and why go into the control log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.errors import CampaignsError, UsageError
from engine.state import control
from engine.state.locking import whoami
from engine.state.records import utc_iso

if TYPE_CHECKING:
    from engine.state import StateStore


@dataclass
class ControlResult:
    """What a pause or resume did: the tasks it changed, and those it left as they were."""

    action: str  # pause | resume
    changed: list[str] = field(default_factory=list)
    unchanged: dict[str, str] = field(default_factory=dict)  # task -> why it was left alone
    by: str = ""
    at: str = ""

    def to_json(self) -> dict[str, Any]:
        """What ``campaigns pause|resume --format json`` prints."""
        return {"action": self.action, "tasks": self.changed, "unchanged": self.unchanged, "by": self.by, "at": self.at}


def _actor(by: str | None) -> tuple[str, str]:
    user, host, _pid = whoami()
    name = (by or "").strip() or user
    return name, host


def _reason(reason: str | None) -> str:
    text = (reason or "").strip()
    if not text:
        raise UsageError("--reason TEXT is required: say why, it goes into the history")
    return text


def _site_of(store: StateStore, task_ids: Sequence[str]) -> dict[str, str | None]:
    bodies = store.resources([f"task.{task_id}" for task_id in task_ids])
    return {task_id: (bodies[f"task.{task_id}"].body.get("site") if f"task.{task_id}" in bodies else None) for task_id in task_ids}


def _select(store: StateStore, names: Sequence[str], every: bool, site: str | None, action: str) -> list[str]:
    """The tasks a command names (or all, of one site), checked against the state."""
    if not store.exists:
        raise CampaignsError(f"no campaigns state at {store.display_url} yet: nothing has been applied, nothing runs")
    if every and names:
        raise UsageError("give task ids or --all, not both")
    if not every and not names:
        raise UsageError(f"name the tasks to {action} (campaigns {action} TASK...), or give --all")
    if site is not None and not every:
        raise UsageError("--site goes with --all")
    states = store.task_states()
    if every:
        chosen = [task_id for task_id, state in states.items() if state.status != "completed"]
        if site is not None:
            sites = _site_of(store, chosen)
            chosen = [task_id for task_id in chosen if sites[task_id] == site]
        return sorted(chosen)
    unknown = [name for name in dict.fromkeys(names) if name not in states]
    if unknown:
        plural = "s" if len(unknown) != 1 else ""
        raise UsageError(
            f"no task{plural} {', '.join(unknown)} in the state (only applied tasks can be {action}d; "
            "see `campaigns status`); nothing was changed"
        )
    return list(dict.fromkeys(names))


def pause(
    store: StateStore,
    names: Sequence[str],
    *,
    reason: str | None,
    by: str | None = None,
    every: bool = False,
    site: str | None = None,
    lock_timeout: float = 10.0,
) -> ControlResult:
    """Hold the tasks now. Completed tasks and tasks already held are left as they are
    (explicitly named completed tasks are refused). Raises StateLocked after ``lock_timeout``."""
    text = _reason(reason)
    actor, host = _actor(by)
    result = ControlResult("pause", by=actor)
    with store.lock("pause", timeout=lock_timeout):
        chosen = _select(store, names, every, site, "pause")
        states = store.task_states()
        completed = [task_id for task_id in chosen if states[task_id].status == "completed"]
        if completed and not every:
            raise UsageError(f"task {', '.join(completed)} is completed: there is nothing to pause; nothing was changed")
        held = control.active_pauses(store)
        for task_id in chosen:
            if task_id in held:
                found = held[task_id]
                result.unchanged[task_id] = f"already paused by {found.paused_by} at {_iso(found.paused_at)}: {found.reason}"
            else:
                result.changed.append(task_id)
        now = store.clock.now()
        result.at = _iso(now)
        serial = store.meta().serial
        with store.writing() as conn:
            control.write_pauses(conn, result.changed, by=actor, reason=text, host=host, now=now, serial=serial)
    return result


def resume(
    store: StateStore,
    names: Sequence[str],
    *,
    reason: str | None,
    by: str | None = None,
    every: bool = False,
    site: str | None = None,
    lock_timeout: float = 10.0,
) -> ControlResult:
    """Lift the emergency pause of the tasks: each is again what git made it (its recorded
    status). A named task that is not held is an error; nothing is changed then."""
    text = _reason(reason)
    actor, host = _actor(by)
    result = ControlResult("resume", by=actor)
    with store.lock("resume", timeout=lock_timeout):
        chosen = _select(store, names, every, site, "resume")
        held = control.active_pauses(store)
        if every:
            chosen = [task_id for task_id in chosen if task_id in held]
        free = [task_id for task_id in chosen if task_id not in held]
        if free:
            raise UsageError(
                f"task {', '.join(free)} is not paused outside git (`campaigns pause`); a task paused in its file "
                "resumes with `status: active` in a pull request; nothing was changed"
            )
        result.changed = chosen
        now = store.clock.now()
        result.at = _iso(now)
        serial = store.meta().serial
        with store.writing() as conn:
            control.lift_pauses(conn, chosen, by=actor, reason=text, host=host, now=now, serial=serial)
    return result


def _iso(moment) -> str:
    return utc_iso(moment) or ""
