"""What the ledger says about deliveries: per occurrence counts (``campaigns report``), totals
per task and the executor's health (``campaigns status``).

Counts come from the occurrences' progress rows and the per-reason counts (kept in step with the
ledger in the same transactions), so a report never scans millions of ledger rows; only the
``--failed`` listing reads the failed rows themselves, streamed in chunks (``failures``).
``pending`` is the ledger's pending rows (claimed, not yet known to be sent, or waiting for a
provider to come back) plus, while an occurrence is still being fanned out, the members that
have no ledger row yet (the audience's current size minus the rows).
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.clock import Clock
from engine.config.models import Platform, Schedule
from engine.delivery.audiences import audience_size
from engine.delivery.directory import directory_store
from engine.delivery.ledger import COUNTED, WINDOW_CLOSED, Counts, Failure, Ledger, Progress
from engine.errors import CampaignsError, UsageError
from engine.schedule.occurrences import due_occurrences

if TYPE_CHECKING:
    from engine.state import StateStore

UTC = dt.timezone.utc
UNRECORDED = "unrecorded"
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
    reasons: dict[str, dict[str, int]] = field(default_factory=dict)  # status -> reason -> rows

    @property
    def pending(self) -> int:
        return self.counts.pending + (self.unclaimed or 0)

    @property
    def failed_by_reason(self) -> dict[str, int]:
        """Failed rows by reason; rows failed before reasons were recorded (a state older than
        schema version 5) are ``unrecorded``."""
        kept = dict(sorted(self.reasons.get("failed", {}).items()))
        rest = self.counts.failed - sum(kept.values())
        if rest > 0:
            kept[UNRECORDED] = rest
        return kept

    @property
    def expired_by_reason(self) -> dict[str, int]:
        """Expired rows by why: those kept with a reason (``provider-unavailable``), and the rest
        (not reached before the last window closed) as ``window-closed``."""
        kept = dict(sorted(self.reasons.get("expired", {}).items()))
        rest = self.counts.expired - sum(kept.values())
        if rest > 0:
            kept[WINDOW_CLOSED] = rest
        return kept

    def to_json(self) -> dict[str, Any]:
        values = self.counts.as_dict()
        values["pending"] = self.pending
        return {
            "occurrence": self.occurrence,
            "state": self.state,
            "finish": self.finish.isoformat() if self.finish else None,
            **{name: values[name] for name in REPORTED},
            "failed_by_reason": self.failed_by_reason,
            "expired_by_reason": self.expired_by_reason,
        }


REPORTED = ("sent", "failed", "expired", "capped", "suppressed", "pending", "unconfirmed")
"""The counts a report shows, in order (SPEC section 6). ``unconfirmed``: handed to the provider
by an executor that crashed before the provider confirmed them, found after the window closed."""


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

    def totals_by_reason(self, status: str) -> dict[str, int]:
        totals: dict[str, int] = {}
        for occurrence in self.occurrences:
            by_reason = occurrence.failed_by_reason if status == "failed" else occurrence.expired_by_reason
            for reason, count in by_reason.items():
                totals[reason] = totals.get(reason, 0) + count
        return dict(sorted(totals.items()))

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "status": self.status,
            "channel": self.channel,
            "occurrences": [occurrence.to_json() for occurrence in self.occurrences],
            "totals": {
                **self.totals,
                "failed_by_reason": self.totals_by_reason("failed"),
                "expired_by_reason": self.totals_by_reason("expired"),
            },
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
    try:
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
    reasons = Ledger(store).reasons(task_id) if progress else {}
    for (_task, key), item in sorted(progress.items(), key=lambda pair: (pair[1].finish_at, pair[0][1])):
        occurrence = OccurrenceReport(key, item.status, _moment(item.finish_at), item.counts, reasons=reasons.get(key, {}))
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
    platform = store.resource("platform")
    try:
        timezone = platform.body["sites"][body["site"]]["timezone"]
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
            found.append(Behind(task_id, key, _moment(item.finish_at), item.counts.pending))
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


def _reasons_cell(by_reason: dict[str, int]) -> str:
    return ", ".join(f"{count:,} {reason}" for reason, count in by_reason.items()) or "-"


def table_header(report: TaskReport) -> list[str]:
    """Column names of ``table_rows``: EXPIRED BY REASON only when some expired row has a reason
    other than ``window-closed``."""
    header = ["OCCURRENCE", "STATE", *[name.upper() for name in REPORTED], "FAILED BY REASON"]
    if set(report.totals_by_reason("expired")) - {WINDOW_CLOSED}:
        header.append("EXPIRED BY REASON")
    return header


def table_rows(report: TaskReport) -> list[list[str]]:
    """The report as table cells (occurrence, state, the counts, failed by reason), with a total row."""
    expired_column = "EXPIRED BY REASON" in table_header(report)
    rows = []
    for occurrence in report.occurrences:
        values = occurrence.to_json()
        row = [occurrence.occurrence, occurrence.state, *[f"{values[name]:,}" for name in REPORTED]]
        row.append(_reasons_cell(occurrence.failed_by_reason))
        if expired_column:
            row.append(_reasons_cell(occurrence.expired_by_reason))
        rows.append(row)
    totals = report.totals
    total = ["total", "", *[f"{totals[name]:,}" for name in REPORTED], _reasons_cell(report.totals_by_reason("failed"))]
    if expired_column:
        total.append(_reasons_cell(report.totals_by_reason("expired")))
    rows.append(total)
    return rows


def failures(store: StateStore, report: TaskReport, occurrence: str | None = None) -> Iterator[Failure]:
    """The failed users of the report's task (or one of its occurrences), streamed in (occurrence,
    user) order; UsageError for an occurrence the task does not have."""
    if occurrence is not None:
        known = [item.occurrence for item in report.occurrences]
        if occurrence not in known:
            hint = difflib.get_close_matches(occurrence, known, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            shown = ", ".join(known[-5:]) if known else "none yet"
            raise UsageError(f"task {report.task} has no occurrence {occurrence!r}{extra}; its occurrences: {shown}")
        wanted = [item for item in report.occurrences if item.occurrence == occurrence]
    else:
        wanted = report.occurrences
    if not any(item.counts.failed for item in wanted):  # the counts say there is nothing to read
        return iter(())
    return Ledger(store).failures(report.task, occurrence)


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
    "failures",
    "table_header",
    "table_rows",
    "task_report",
]
