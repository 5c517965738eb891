"""Control outside git: emergency pauses, and applies that failed after a merge.

An emergency pause (``campaigns pause``) is an override kept beside the task's recorded status,
never instead of it: applies go on recording what git says (``running``, a new content digest)
while the override holds the task, and ``resume`` lifts the override so the task is whatever
git made it meanwhile. That is why a pause survives later applies "whatever its file says"
without the planner or the applier knowing about it, and why the plan shows it as drift
instead of as a change.

Every pause and resume also goes into the control log (who, when, why, host), which
``campaigns state history`` shows next to the applies. A refused apply of a merged pull
request is recorded too, until an apply succeeds, so every later plan can say that the
repository is ahead of the state.

Tables are created by state migration 6 (``v6_tables``, frozen once released).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, Column, Connection, Integer, MetaData, String, Table, Text, delete, select

from engine.state.records import utc_iso
from engine.state.tables import UTCDateTime

if TYPE_CHECKING:
    from engine.state import StateStore


def v6_tables(metadata: MetaData) -> dict[str, Table]:
    """Schema version 6: the emergency pauses in force, the control log, failed applies."""
    tables = [
        Table(
            "campaigns_emergency_pauses",
            metadata,
            Column("task_id", String, primary_key=True),
            Column("paused_by", String, nullable=False),
            Column("paused_at", UTCDateTime, nullable=False),
            Column("reason", Text, nullable=False),
            Column("host", String, nullable=False),
        ),
        Table(
            "campaigns_control_log",
            metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("at", UTCDateTime, nullable=False),
            Column("action", String(16), nullable=False),
            Column("task_id", String),
            Column("actor", String, nullable=False),
            Column("reason", Text, nullable=False),
            Column("host", String, nullable=False),
            Column("serial", BigInteger, nullable=False),  # the state's serial at the time
        ),
        Table(
            "campaigns_apply_failures",
            metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("failed_at", UTCDateTime, nullable=False),
            Column("serial", BigInteger, nullable=False),
            Column("pr_number", Integer),
            Column("merge_commit", String),
            Column("approved_by", String),
            Column("message", Text, nullable=False),
            Column("details", Text, nullable=False),  # JSON list of lines
        ),
    ]
    return {table.name: table for table in tables}


_METADATA = MetaData()
_TABLES = v6_tables(_METADATA)
pauses = _TABLES["campaigns_emergency_pauses"]
control_log = _TABLES["campaigns_control_log"]
apply_failures = _TABLES["campaigns_apply_failures"]


@dataclass(frozen=True)
class EmergencyPause:
    """A task held by ``campaigns pause`` until ``campaigns resume``."""

    task_id: str
    paused_by: str
    paused_at: datetime
    reason: str
    host: str

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task_id, "by": self.paused_by, "at": utc_iso(self.paused_at), "reason": self.reason}


@dataclass(frozen=True)
class ControlEvent:
    """One pause or resume, as the control log keeps it."""

    at: datetime
    action: str  # pause | resume
    task_id: str | None
    actor: str
    reason: str
    host: str
    serial: int

    def to_json(self) -> dict[str, Any]:
        return {
            "at": utc_iso(self.at),
            "action": self.action,
            "task": self.task_id,
            "by": self.actor,
            "reason": self.reason,
            "host": self.host,
            "serial": self.serial,
        }


@dataclass(frozen=True)
class ApplyFailure:
    """An apply that was refused or failed; kept until an apply succeeds."""

    failed_at: datetime
    serial: int
    pr_number: int | None
    merge_commit: str | None
    approved_by: str | None
    message: str
    details: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "failed_at": utc_iso(self.failed_at),
            "serial": self.serial,
            "pr_number": self.pr_number,
            "merge_commit": self.merge_commit,
            "approved_by": self.approved_by,
            "message": self.message,
            "details": list(self.details),
        }


def _has_tables(store: StateStore) -> bool:
    """False for a state that does not exist yet (nothing is paused there)."""
    return store.exists


# -- reads -------------------------------------------------------------------------------------


def active_pauses(store: StateStore) -> dict[str, EmergencyPause]:
    """task id -> the emergency pause holding it."""
    if not _has_tables(store):
        return {}
    with store.reading() as conn:
        rows = conn.execute(select(pauses).order_by(pauses.c.task_id)).all()
    return {
        row.task_id: EmergencyPause(row.task_id, row.paused_by, row.paused_at, row.reason, row.host) for row in rows
    }


def paused_ids(conn: Connection) -> set[str]:
    """The emergency-paused task ids, in one small query (the executor's periodic check)."""
    return set(conn.execute(select(pauses.c.task_id)).scalars())


def events(store: StateStore, limit: int | None = None) -> list[ControlEvent]:
    """The control log, oldest first (the last ``limit`` entries if given)."""
    if not _has_tables(store):
        return []
    query = select(control_log).order_by(control_log.c.id.desc())
    if limit is not None:
        query = query.limit(limit)
    with store.reading() as conn:
        rows = conn.execute(query).all()
    return [
        ControlEvent(row.at, row.action, row.task_id, row.actor, row.reason, row.host, row.serial) for row in reversed(rows)
    ]


def failed_applies(store: StateStore) -> list[ApplyFailure]:
    """Applies refused or failed since the last one that succeeded, oldest first."""
    if not _has_tables(store):
        return []
    with store.reading() as conn:
        rows = conn.execute(select(apply_failures).order_by(apply_failures.c.id)).all()
    return [
        ApplyFailure(
            row.failed_at, row.serial, row.pr_number, row.merge_commit, row.approved_by, row.message, tuple(json.loads(row.details))
        )
        for row in rows
    ]


# -- writes ------------------------------------------------------------------------------------


def write_pauses(
    conn: Connection, task_ids: list[str], *, by: str, reason: str, host: str, now: datetime, serial: int
) -> None:
    """Hold these tasks (none of them held yet) and log each pause."""
    if not task_ids:
        return
    conn.execute(
        pauses.insert(),
        [{"task_id": task_id, "paused_by": by, "paused_at": now, "reason": reason, "host": host} for task_id in task_ids],
    )
    _log(conn, "pause", task_ids, by=by, reason=reason, host=host, now=now, serial=serial)


def lift_pauses(
    conn: Connection, task_ids: list[str], *, by: str, reason: str, host: str, now: datetime, serial: int
) -> None:
    """Release these held tasks and log each resume."""
    for start in range(0, len(task_ids), 500):
        conn.execute(delete(pauses).where(pauses.c.task_id.in_(task_ids[start : start + 500])))
    _log(conn, "resume", task_ids, by=by, reason=reason, host=host, now=now, serial=serial)


def _log(
    conn: Connection, action: str, task_ids: list[str], *, by: str, reason: str, host: str, now: datetime, serial: int
) -> None:
    if task_ids:
        conn.execute(
            control_log.insert(),
            [
                {"at": now, "action": action, "task_id": task_id, "actor": by, "reason": reason, "host": host, "serial": serial}
                for task_id in task_ids
            ],
        )


def record_apply_failure(
    store: StateStore,
    *,
    message: str,
    details: list[str],
    now: datetime,
    serial: int,
    pr_number: int | None = None,
    merge_commit: str | None = None,
    approved_by: str | None = None,
) -> None:
    """Remember that an apply (with approval evidence) was refused, for every later plan's drift."""
    with store.writing() as conn:
        conn.execute(
            apply_failures.insert().values(
                failed_at=now,
                serial=serial,
                pr_number=pr_number,
                merge_commit=merge_commit,
                approved_by=approved_by,
                message=message,
                details=json.dumps(details, ensure_ascii=False),
            )
        )


def clear_apply_failures(conn: Connection) -> None:
    """An apply succeeded: the state caught up with the repository it applied."""
    conn.execute(delete(apply_failures))
