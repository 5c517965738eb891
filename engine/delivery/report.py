"""What the ledger says about deliveries: per occurrence counts (``campaigns report``), totals
per task and the executor's health (``campaigns status``).

Counts come from the occurrences' progress rows (kept in step with the ledger in the same
transactions), so a report never scans millions of ledger rows. ``pending`` is the ledger's
pending rows (claimed, not yet known to be sent) plus, while an occurrence is still being fanned
out, the members that have no ledger row yet (the audience's current size minus the rows).
"""

from __future__ import annotations

import datetime as dt
import difflib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.clock import Clock
from engine.delivery.ledger import COUNTED, Counts, Ledger, Progress
from engine.errors import UsageError

if TYPE_CHECKING:
    from engine.state import StateStore

UTC = dt.timezone.utc
BEHIND_GRACE_S = 120.0
"""How long past an occurrence's last window the executor may take to close it before it counts
as behind (a poll interval or two)."""


@dataclass
class OccurrenceReport:
    occurrence: str
    state: str  # open | fanned | closed | not started
    finish: dt.datetime | None
    counts: Counts
    unclaimed: int | None = None  # members without a ledger row yet (None: unknown)

    @property
    def pending(self) -> int:
        return self.counts.pending + (self.unclaimed or 0)

    def to_json(self) -> dict[str, Any]:
        values = self.counts.as_dict()
        values["pending"] = self.pending
        return {
            "occurrence": self.occurrence,
            "state": self.state,
            "finish": self.finish.isoformat() if self.finish else None,
            **{name: values[name] for name in REPORTED},
        }


REPORTED = ("sent", "failed", "expired", "capped", "suppressed", "pending")
"""The counts a report shows, in order (SPEC section 6)."""


@dataclass
class TaskReport:
    task: str
    status: str | None
    channel: str | None
    occurrences: list[OccurrenceReport] = field(default_factory=list)

    @property
    def totals(self) -> dict[str, int]:
        totals = {name: 0 for name in REPORTED}
        for occurrence in self.occurrences:
            values = occurrence.to_json()
            for name in REPORTED:
                totals[name] += values[name]
        return totals

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "status": self.status,
            "channel": self.channel,
            "occurrences": [occurrence.to_json() for occurrence in self.occurrences],
            "totals": self.totals,
        }


def _moment(epoch: float | None) -> dt.datetime | None:
    return None if epoch is None else dt.datetime.fromtimestamp(epoch, UTC)


def _task_body(store: StateStore, task_id: str) -> dict[str, Any] | None:
    stored = store.resource(f"task.{task_id}")
    if stored is None:
        return None
    return {key: value for key, value in stored.body.items() if key != "campaign"}


def _unclaimed(store: StateStore, task_id: str, body: dict[str, Any], rows: int) -> int | None:
    """Members of the task's audiences now, minus the ledger rows already written."""
    from engine.delivery.audiences import audience_size
    from engine.delivery.directory import directory_store
    from engine.errors import CampaignsError

    try:
        from engine.config.models import Platform

        platform = store.resource("platform")
        if platform is None:
            return None
        model = Platform.model_validate(platform.body)
        directory = directory_store(model, store, ".")
        try:
            audiences = {s.id: s.body for s in store.resources(kind="audience").values()}
            size = audience_size(directory, body, audiences, task_id=task_id, attachments=store)
        finally:
            if directory is not store:
                directory.close()
    except (CampaignsError, ValueError):
        return None
    return None if size is None else max(0, size - rows)


def task_report(store: StateStore, task_id: str, *, clock: Clock | None = None, estimate: bool = True) -> TaskReport:
    """Counts per occurrence of one task, oldest first, as at ``clock`` (default: the store's);
    UsageError when the state never heard of it.

    With ``estimate``, occurrences still being fanned out count the members that have no ledger
    row yet as pending (one count query over the audiences).
    """
    now = (clock or store.clock).now()
    states = store.task_states()
    progress = Ledger(store).progress(task_id)
    state = states.get(task_id)
    if state is None and not progress:
        known = sorted(states)
        hint = difflib.get_close_matches(task_id, known, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise UsageError(f"task {task_id!r} is not in the state{extra}; apply it first")
    body = _task_body(store, task_id)
    report = TaskReport(task_id, state.status if state else None, body.get("channel") if body else None)
    for (_task, key), item in sorted(progress.items(), key=lambda pair: (pair[1].finish_at, pair[0][1])):
        occurrence = OccurrenceReport(key, item.status, _moment(item.finish_at), item.counts)
        if item.status == "open" and estimate and body is not None:
            occurrence.unclaimed = _unclaimed(store, task_id, body, item.counts.total)
        report.occurrences.append(occurrence)
    if state is not None and state.status == "running" and body is not None:
        for key, finish in _due_unstarted(store, task_id, body, state.since, now, set(k for _t, k in progress)):
            unclaimed = _unclaimed(store, task_id, body, 0) if estimate else None
            report.occurrences.append(OccurrenceReport(key, "not started", finish, Counts(), unclaimed))
    return report


def _due_unstarted(
    store: StateStore, task_id: str, body: dict[str, Any], since: dt.datetime, now: dt.datetime, known: set[str]
) -> list[tuple[str, dt.datetime]]:
    """Occurrences of a running task whose first window has opened, that ended after the task
    started running, and that have no progress row."""
    from engine.config.models import Schedule
    from engine.schedule.occurrences import due_occurrences

    platform = store.resource("platform")
    try:
        timezone = platform.body["sites"][body["site"]]["timezone"]  # type: ignore[union-attr]
        schedule = Schedule.model_validate(body["schedule"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return []
    lower = since if since <= now else None
    return [
        (occurrence.key, occurrence.finish)
        for occurrence in due_occurrences(schedule, timezone, now, since=lower)
        if occurrence.key not in known
    ]


def delivery_totals(store: StateStore) -> dict[str, Counts]:
    """task id -> counts over all its occurrences (from the progress rows)."""
    totals: dict[str, Counts] = {}
    for (task_id, _key), item in Ledger(store).progress().items():
        totals.setdefault(task_id, Counts()).add(item.counts)
    return totals


@dataclass(frozen=True)
class Behind:
    """An occurrence whose last window closed more than the grace ago and is still not closed."""

    task: str
    occurrence: str
    finish: dt.datetime
    pending: int | None  # ledger rows still pending (None: not started at all)

    def describe(self) -> str:
        late = f"its last window closed at {self.finish.isoformat(timespec='minutes')}"
        what = "never started" if self.pending is None else f"{self.pending:,} pending, not closed"
        return f"task {self.task} occurrence {self.occurrence}: {what}; {late}"


def executor_behind(store: StateStore, clock: Clock | None = None, *, grace_s: float = BEHIND_GRACE_S) -> list[Behind]:
    """Occurrences the executor should have finished (delivered or expired) by ``clock``'s now
    (default: the store's clock) but has not: the health check of ``campaigns status``."""
    now = (clock or store.clock).now()
    limit = now.timestamp() - grace_s
    found: list[Behind] = []
    progress = Ledger(store).progress()
    for (task_id, key), item in progress.items():
        if item.status != "closed" and item.finish_at < limit:
            found.append(Behind(task_id, key, _moment(item.finish_at), item.counts.pending))  # type: ignore[arg-type]
    started = {pair for pair in progress}
    for task_id, state in store.task_states().items():
        if state.status != "running":
            continue
        body = _task_body(store, task_id)
        if body is None:
            continue
        known = {key for (task, key) in started if task == task_id}
        for key, finish in _due_unstarted(store, task_id, body, state.since, now, known):
            if finish.timestamp() < limit:
                found.append(Behind(task_id, key, finish, None))
    return sorted(found, key=lambda item: (item.finish, item.task, item.occurrence))


def table_rows(report: TaskReport) -> list[list[str]]:
    """The report as table cells (occurrence, state, then the counts), with a total row."""
    rows = []
    for occurrence in report.occurrences:
        values = occurrence.to_json()
        rows.append([occurrence.occurrence, occurrence.state, *[f"{values[name]:,}" for name in REPORTED]])
    totals = report.totals
    rows.append(["total", "", *[f"{totals[name]:,}" for name in REPORTED]])
    return rows


__all__ = [
    "BEHIND_GRACE_S",
    "COUNTED",
    "Behind",
    "OccurrenceReport",
    "Progress",
    "REPORTED",
    "TaskReport",
    "delivery_totals",
    "executor_behind",
    "table_rows",
    "task_report",
]
