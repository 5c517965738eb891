"""The state's tables, in SQLAlchemy Core, identical on SQLite and PostgreSQL.

Each ``vN_*`` builder is frozen once a migration uses it: migration N calls it on a private
MetaData to create its tables, and the store's queries use the same builder on ``METADATA``.
When a later migration changes a table, copy its builder to the new shape for the queries and
leave the old builder (and the old migration) untouched.

Every table name starts with ``campaigns_`` so the state can share a PostgreSQL schema.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeDecorator

from engine.state.records import TASK_STATUSES


class UTCDateTime(TypeDecorator):
    """A timestamp that is always timezone-aware UTC in Python, whatever the backend stores."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the state store; use timezone-aware UTC")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def v1_tables(metadata: MetaData) -> dict[str, Table]:
    """The tables of schema version 1 (lineage/serial, resources, task statuses, pilot tests,
    history, lock holder)."""
    statuses = ", ".join(f"'{status}'" for status in TASK_STATUSES)
    tables = [
        Table(
            "campaigns_schema_version",
            metadata,
            Column("version", Integer, primary_key=True, autoincrement=False),
            Column("description", String, nullable=False),
            Column("applied_at", UTCDateTime, nullable=False),
        ),
        Table(
            "campaigns_meta",
            metadata,
            Column("id", Integer, primary_key=True, autoincrement=False),
            Column("lineage", String(36), nullable=False),
            Column("serial", BigInteger, nullable=False),
            Column("created_at", UTCDateTime, nullable=False),
            CheckConstraint("id = 1", name="campaigns_meta_one_row"),
        ),
        Table(
            "campaigns_resources",
            metadata,
            Column("address", String, primary_key=True),
            Column("kind", String, nullable=False),
            Column("resource_id", String, nullable=False),
            Column("digest", String(64), nullable=False),
            Column("body", Text, nullable=False),
            Column("serial", BigInteger, nullable=False),
            Index("campaigns_resources_kind", "kind"),
        ),
        Table(
            "campaigns_task_states",
            metadata,
            Column("task_id", String, primary_key=True),
            Column("status", String(16), nullable=False),
            Column("content_digest", String(64)),
            Column("since", UTCDateTime, nullable=False),
            Column("updated_at", UTCDateTime, nullable=False),
            Column("serial", BigInteger, nullable=False),
            CheckConstraint(f"status IN ({statuses})", name="campaigns_task_states_status"),
        ),
        Table(
            "campaigns_pilot_tests",
            metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("run_id", String(36), nullable=False),
            Column("task_id", String, nullable=False),
            Column("content_digest", String(64), nullable=False),
            Column("tester", String, nullable=False),
            Column("channel", String, nullable=False),
            Column("passed", Boolean, nullable=False),
            Column("detail", Text, nullable=False),
            Column("tested_at", UTCDateTime, nullable=False),
            Index("campaigns_pilot_tests_task", "task_id", "content_digest"),
            Index("campaigns_pilot_tests_run", "run_id"),
        ),
        Table(
            "campaigns_history",
            metadata,
            Column("serial", BigInteger, primary_key=True, autoincrement=False),
            Column("lineage", String(36), nullable=False),
            Column("applied_at", UTCDateTime, nullable=False),
            Column("applied_by", String, nullable=False),
            Column("approval_kind", String(16)),
            Column("approved_by", String),
            Column("reason", Text),
            Column("pr_number", Integer),
            Column("pr_author", String),
            Column("merge_commit", String),
            Column("pr_title", Text),
            Column("pr_url", Text),
            Column("summary", Text, nullable=False),
            Column("changes", Text, nullable=False),
        ),
        Table(
            "campaigns_lock",
            metadata,
            Column("name", String(16), primary_key=True),
            Column("lock_id", String(36), nullable=False),
            Column("holder_user", String, nullable=False),
            Column("holder_host", String, nullable=False),
            Column("holder_pid", Integer, nullable=False),
            Column("operation", String, nullable=False),
            Column("acquired_at", UTCDateTime, nullable=False),
        ),
    ]
    return {table.name: table for table in tables}


def v2_tables(metadata: MetaData) -> dict[str, Table]:
    """Schema version 2: files that resources refer to (an audience's CSV), by content digest,
    so the executor needs the state alone, never a checkout of the repository."""
    table = Table(
        "campaigns_attachments",
        metadata,
        Column("digest", String(64), primary_key=True),
        Column("path", String, nullable=False),
        Column("size", BigInteger, nullable=False),
        Column("content", LargeBinary, nullable=False),
        Column("serial", BigInteger, nullable=False),
    )
    return {table.name: table}


METADATA = MetaData()
_current = {**v1_tables(METADATA), **v2_tables(METADATA)}

schema_version = _current["campaigns_schema_version"]
meta = _current["campaigns_meta"]
resources = _current["campaigns_resources"]
task_states = _current["campaigns_task_states"]
pilot_tests = _current["campaigns_pilot_tests"]
history = _current["campaigns_history"]
lock = _current["campaigns_lock"]
attachments = _current["campaigns_attachments"]
