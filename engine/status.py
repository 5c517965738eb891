"""What ``campaigns status`` shows, as rows a program can use: every task the state knows, its
status, its last pilot test and its next occurrence.

Built from the state alone (the stored task bodies and platform), so it answers on any machine
that can reach the state, whatever branch is checked out. Other columns (delivery counts) are
added by extending :class:`TaskRow` and :func:`status_rows`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.config.models import Schedule
from engine.delivery.health import Undeliverable, undeliverable
from engine.delivery.report import Behind, delivery_totals, executor_behind
from engine.schedule.occurrences import preview
from engine.state import control
from engine.state.records import utc_iso

if TYPE_CHECKING:
    from engine.clock import Clock
    from engine.state import StateStore


@dataclass
class TaskRow:
    task: str
    campaign: str | None
    channel: str | None
    status: str
    since: dt.datetime
    content_digest: str | None
    last_test_at: dt.datetime | None = None
    last_test_passed: bool | None = None
    last_test_current: bool | None = None  # the last test was of the task's current content
    next_occurrence: str | None = None  # key
    next_start: dt.datetime | None = None
    emergency: control.EmergencyPause | None = None  # held by `campaigns pause` (status shows "paused")
    recorded_status: str | None = None  # what git made it, under the emergency pause
    site: str | None = None
    timezone: str | None = None  # the site's zone (IANA name), in which `status` shows the row's times
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "campaign": self.campaign,
            "channel": self.channel,
            "status": self.status,
            "since": utc_iso(self.since),
            "content_digest": self.content_digest,
            "last_pilot_test": None
            if self.last_test_at is None
            else {
                "tested_at": utc_iso(self.last_test_at),
                "passed": self.last_test_passed,
                "current_content": self.last_test_current,
            },
            "next_occurrence": None
            if self.next_occurrence is None
            else {"key": self.next_occurrence, "start": self.next_start.isoformat() if self.next_start else None},
            **(
                {"emergency_pause": {**self.emergency.to_json(), "recorded_status": self.recorded_status}}
                if self.emergency is not None
                else {}
            ),
            **self.extra,
        }

    @property
    def shown_status(self) -> str:
        """``paused (emergency)`` for a task held by ``campaigns pause``, else its status."""
        return "paused (emergency)" if self.emergency is not None else self.status


def _next(body: dict[str, Any], platform: dict[str, Any] | None, now: dt.datetime) -> tuple[str, dt.datetime] | None:
    try:
        timezone = platform["sites"][body["site"]]["timezone"]
        schedule = Schedule.model_validate(body["schedule"])
    except (KeyError, TypeError, ValueError):
        return None
    found = preview(schedule, timezone, now, 1).upcoming
    if not found:
        return None
    return found[0].key, found[0].start


def _site_zone(body: dict[str, Any], platform: dict[str, Any] | None) -> str | None:
    try:
        return str(platform["sites"][body["site"]]["timezone"])
    except (KeyError, TypeError):
        return None


def status_rows(store: StateStore, clock: Clock | None = None) -> list[TaskRow]:
    """One row per task the state knows (completed ones included), sorted by task id; the next
    occurrence is the next one after ``clock``'s now (default: the store's clock)."""
    now = (clock or store.clock).now()
    states = store.task_states()
    bodies = store.resources(kind="task")
    stored_platform = store.resource("platform")
    platform = stored_platform.body if stored_platform is not None else None
    held = control.active_pauses(store)
    last_runs: dict[str, Any] = {}
    for run in store.pilot_tests():
        last_runs[run.task_id] = run  # oldest first: the last one wins
    rows = []
    for task_id, state in sorted(states.items()):
        stored = bodies.get(f"task.{task_id}")
        body = stored.body if stored is not None else {}
        row = TaskRow(
            task=task_id,
            campaign=body.get("campaign"),
            channel=body.get("channel"),
            status=state.status,
            since=state.since,
            content_digest=state.content_digest,
            site=body.get("site"),
            timezone=_site_zone(body, platform),
        )
        if task_id in held:
            row.emergency, row.recorded_status, row.status = held[task_id], state.status, "paused"
            row.since = held[task_id].paused_at
        run = last_runs.get(task_id)
        if run is not None:
            row.last_test_at = run.tested_at
            row.last_test_passed = run.passed
            row.last_test_current = run.content_digest == state.content_digest
        if state.status != "completed" and body:
            found = _next(body, platform, now)
            if found is not None:
                row.next_occurrence, row.next_start = found
        rows.append(row)
    return rows


@dataclass
class StatusReport:
    """``campaigns status``: the rows with their deliveries, and the health check's findings."""

    lineage: str | None
    serial: int
    exists: bool  # the state exists (else nothing was applied yet)
    display: str  # the state's URL, for people
    rows: list[TaskRow]
    behind: list[Behind]  # occurrences past their last window neither delivered nor expired
    blocked: list[Undeliverable]  # running tasks that cannot be delivered at all

    @property
    def healthy(self) -> bool:
        return not self.behind and not self.blocked

    def to_json(self) -> dict[str, Any]:
        return {
            "lineage": self.lineage,
            "serial": self.serial,
            "tasks": [row.to_json() for row in self.rows],
            "executor": {"behind": [b.describe() for b in self.behind], "ok": not self.behind},
            "undeliverable": [item.to_json() for item in self.blocked],
            "ok": self.healthy,
        }


def status_report(store: StateStore, clock: Clock, repo: Path) -> StatusReport:
    """Every task's row with its delivery counts (``deliveries``) and, for a running task that
    cannot be delivered (checked in this environment: ``repo``'s providers), why (``undeliverable``)."""
    meta = store.meta()
    exists = store.exists
    rows = status_rows(store, clock)
    totals = delivery_totals(store)
    behind = executor_behind(store, clock)
    blocked = undeliverable(store, repo) if exists else []
    held = {row.task for row in rows if row.emergency is not None}
    blocked = [item for item in blocked if item.task not in held]  # an emergency-paused task sends nothing
    problems = {item.task: item.problem for item in blocked}
    for row in rows:  # delivery counts from the ledger (engine.delivery.report)
        counts = totals.get(row.task)
        row.extra["deliveries"] = counts.as_dict() if counts is not None else None
        row.extra["undeliverable"] = problems.get(row.task)
    return StatusReport(meta.lineage, meta.serial, exists, store.display_url, rows, behind, blocked)
