"""Tables of the user directory and of audience membership (state schema version 3).

``v3_tables`` is frozen: migration 3 calls it on a private MetaData, and the queries of
``engine.delivery.directory`` / ``engine.delivery.audiences`` use the same builder on
``METADATA``. A later change copies the builder to a new version; never edit this one.

Why these shapes:

- ``campaigns_users`` keeps one row per user with the attributes as one JSON document (JSONB on
  PostgreSQL, JSON text on SQLite): a directory's columns are whatever the marketer's CSV has, so
  no DDL per column, and one row read gives a member whole. On SQLite it is a WITHOUT ROWID table
  clustered by ``user_id``, so a member stream in ``user_id`` order is a sequential scan.
- ``user_id`` compares bytewise on both backends (``COLLATE "C"`` on PostgreSQL, SQLite's
  BINARY), so "ordered by user_id" is the same order everywhere.
- ``campaigns_audience_lists`` caches the parsed members of a CSV (or ``users:`` list) by content
  digest, parsed once, so audiences join it in SQL instead of re-reading a big CSV per occurrence.
- ``campaigns_audience_snapshots`` holds the member ids of ``refresh: once`` audiences per task.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, MetaData, PrimaryKeyConstraint, String, Table, Text
from sqlalchemy.dialects.postgresql import JSONB

from engine.state.tables import UTCDateTime


def v3_tables(metadata: MetaData) -> dict[str, Table]:
    """Schema version 3: user directory, known attribute names, import history, cached audience
    lists (CSV / ``users:``) and ``refresh: once`` snapshots."""

    def user_id_type() -> String:  # at most 32 characters, compared bytewise on both backends
        return String(32).with_variant(String(32, collation="C"), "postgresql")

    def attributes_type() -> Text:  # a JSON object: JSONB on PostgreSQL, JSON text on SQLite
        return Text().with_variant(JSONB(), "postgresql")

    tables = [
        Table(
            "campaigns_users",
            metadata,
            Column("user_id", user_id_type(), primary_key=True),
            Column("attributes", attributes_type(), nullable=False),
            Column("opt_out", String),  # channels joined by "|", sorted; NULL: none
            sqlite_with_rowid=False,
        ),
        Table(
            "campaigns_user_attributes",
            metadata,
            Column("name", String, primary_key=True),
        ),
        Table(
            "campaigns_user_imports",
            metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("imported_at", UTCDateTime, nullable=False),
            Column("source", Text, nullable=False),
            Column("mode", String(16), nullable=False),
            Column("rows", BigInteger, nullable=False),
            Column("attributes", Text, nullable=False),  # JSON list of the file's attribute columns
            Column("total_users", BigInteger, nullable=False),
        ),
        Table(
            "campaigns_audience_lists",
            metadata,
            Column("digest", String(64), nullable=False),
            Column("user_id", user_id_type(), nullable=False),
            Column("attributes", attributes_type()),  # CSV columns of this user; NULL: none
            Column("opt_out", String),
            PrimaryKeyConstraint("digest", "user_id"),
            sqlite_with_rowid=False,
        ),
        Table(
            "campaigns_audience_list_meta",
            metadata,
            Column("digest", String(64), primary_key=True),
            Column("kind", String(16), nullable=False),  # csv | users
            Column("size", BigInteger, nullable=False),
            Column("columns", Text, nullable=False),  # JSON list of attribute columns
            Column("created_at", UTCDateTime, nullable=False),
        ),
        Table(
            "campaigns_audience_snapshots",
            metadata,
            Column("task_id", String, nullable=False),
            Column("audience_id", String, nullable=False),
            Column("user_id", user_id_type(), nullable=False),
            PrimaryKeyConstraint("task_id", "audience_id", "user_id"),
            sqlite_with_rowid=False,
        ),
        Table(
            "campaigns_audience_snapshot_meta",
            metadata,
            Column("task_id", String, nullable=False),
            Column("audience_id", String, nullable=False),
            Column("size", BigInteger, nullable=False),
            Column("audience_digest", String(64), nullable=False),
            Column("taken_at", UTCDateTime, nullable=False),
            PrimaryKeyConstraint("task_id", "audience_id"),
        ),
    ]
    return {table.name: table for table in tables}


METADATA = MetaData()
_current = v3_tables(METADATA)

users = _current["campaigns_users"]
user_attributes = _current["campaigns_user_attributes"]
user_imports = _current["campaigns_user_imports"]
audience_lists = _current["campaigns_audience_lists"]
audience_list_meta = _current["campaigns_audience_list_meta"]
snapshots = _current["campaigns_audience_snapshots"]
snapshot_meta = _current["campaigns_audience_snapshot_meta"]
