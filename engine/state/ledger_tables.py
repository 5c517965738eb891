"""Tables of the delivery ledger (state schema versions 4 and 5).

``v4_tables`` is frozen: migration 4 calls it on a private MetaData. Version 5 is a delta on it
(``V5_STATEMENTS`` / ``v5_migrate``: new columns and the reasons table), and the ledger's
queries use ``v5_tables`` (version 4 with those columns) on ``METADATA``. A later change adds
another delta the same way.

- ``campaigns_deliveries``: THE ledger, one row per (task, occurrence, user), written before the
  message is sent, with the deterministic message id. Clustered by that key (WITHOUT ROWID on
  SQLite), so one occurrence's rows, inserted in user_id order, are appended, and a batch is a
  contiguous key range that one ``UPDATE ... BETWEEN`` settles. ``cap_key`` (``site/YYYY-MM-DD``,
  the site-local day of the send) is indexed with the user for the daily cap across tasks.
- ``campaigns_delivery_occurrences``: progress of one occurrence: ``last_user`` (the cursor: the last user_id
  given a ledger row; members are taken in user_id order), status (``open`` -> ``fanned`` when
  every member has a row -> ``closed`` when no row is pending), and running counts per status so
  ``report`` and ``status`` never scan the ledger.
- ``campaigns_delivery_claims``: the batches in flight: which executor holds which user range.
  A batch whose executor died (or that was released unsent) is taken over by another executor
  with ``FOR UPDATE SKIP LOCKED``.
- ``campaigns_delivery_pacing``: per (site, channel) the instant the send timeline is free
  again; each claim reserves its stretch, so executors together keep the site's rate.
- ``campaigns_executors``: who runs (id, host, pid) and when each last polled, for ``status``.

Version 5 (reasons, unconfirmed, retries):

- ``campaigns_deliveries.reason``: why a row is ``failed`` (``missing-variable``, ``too-long``,
  ``provider-rejected``, ...), or ``provider-unavailable`` on a row the provider could not take
  (pending, retried later; ``expired`` with that reason if the window closed first); ``error``
  holds the detail (which variable, which field, the provider's code, the last error).
  ``status`` may also be ``unconfirmed``: handed to the provider by an executor that died before
  the send was confirmed, found after the window closed (counted against the daily cap).
- ``campaigns_delivery_occurrences.unconfirmed``: the running count of those rows.
- ``campaigns_delivery_claims.retry_at`` / ``retries``: a released batch whose messages the
  provider could not take waits until ``retry_at`` (backoff doubling with ``retries``).
- ``campaigns_delivery_reasons``: per (task, occurrence, status, reason) how many rows, kept in
  the same transactions as the rows (only rows with a reason are counted: failures are rare, so
  the fan-out's hot path never touches it), so reports never group the ledger.

Times are epoch seconds (doubles): the executor's clock, which a test run may simulate.
``user_id`` columns compare bytewise on both backends (``COLLATE "C"``), like the directory's.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
)

DELIVERY_STATUSES = ("pending", "sent", "failed", "expired", "unconfirmed", "capped", "suppressed")
OCCURRENCE_STATUSES = ("open", "fanned", "closed")


def v4_tables(metadata: MetaData) -> dict[str, Table]:
    """Schema version 4: delivery ledger, occurrence progress, claims, pacing, executors."""

    def user_id_type() -> String:
        return String(32).with_variant(String(32, collation="C"), "postgresql")

    occurrence_statuses = ", ".join(f"'{s}'" for s in OCCURRENCE_STATUSES)
    tables = [
        Table(
            "campaigns_deliveries",
            metadata,
            Column("task_id", String, nullable=False),
            Column("occurrence", String(10), nullable=False),
            Column("user_id", user_id_type(), nullable=False),
            Column("message_id", String(64), nullable=False),
            Column("status", String(10), nullable=False),
            Column("creative", String),
            Column("cap_key", String),
            Column("attempts", SmallInteger, nullable=False),
            Column("at", Float, nullable=False),
            Column("error", Text),
            PrimaryKeyConstraint("task_id", "occurrence", "user_id"),
            # no CHECK on status: SQLite evaluates it on every insert and update (+60% per row);
            # only engine.delivery.ledger writes these rows
            Index("campaigns_deliveries_cap", "cap_key", "user_id"),
            sqlite_with_rowid=False,
            # room on each page so that pending -> sent (no indexed column changes) is a HOT
            # update on PostgreSQL: no new index entries for a million updated rows
            postgresql_with={"fillfactor": 50},
        ),
        Table(
            "campaigns_delivery_occurrences",
            metadata,
            Column("task_id", String, nullable=False),
            Column("occurrence", String(10), nullable=False),
            Column("site", String, nullable=False),
            Column("channel", String, nullable=False),
            Column("status", String(10), nullable=False),
            Column("last_user", user_id_type()),  # the cursor: members up to it have rows
            Column("finish_at", Float, nullable=False),
            Column("started_at", Float, nullable=False),
            Column("closed_at", Float),
            Column("pending", BigInteger, nullable=False, default=0),
            Column("sent", BigInteger, nullable=False, default=0),
            Column("failed", BigInteger, nullable=False, default=0),
            Column("expired", BigInteger, nullable=False, default=0),
            Column("capped", BigInteger, nullable=False, default=0),
            Column("suppressed", BigInteger, nullable=False, default=0),
            PrimaryKeyConstraint("task_id", "occurrence"),
            CheckConstraint(f"status IN ({occurrence_statuses})", name="campaigns_delivery_occurrences_status"),
        ),
        Table(
            "campaigns_delivery_claims",
            metadata,
            Column("claim_id", String(32), primary_key=True),
            Column("task_id", String, nullable=False),
            Column("occurrence", String(10), nullable=False),
            Column("executor", String(32)),  # NULL: released unsent, anyone may take it
            Column("first_user", user_id_type(), nullable=False),
            Column("last_user", user_id_type(), nullable=False),
            Column("size", Integer, nullable=False),
            Column("created_at", Float, nullable=False),
            Index("campaigns_delivery_claims_occurrence", "task_id", "occurrence"),
        ),
        Table(
            "campaigns_delivery_pacing",
            metadata,
            Column("site", String, nullable=False),
            Column("channel", String, nullable=False),
            Column("next_free", Float, nullable=False),
            PrimaryKeyConstraint("site", "channel"),
        ),
        Table(
            "campaigns_executors",
            metadata,
            Column("executor", String(32), primary_key=True),
            Column("host", String, nullable=False),
            Column("pid", Integer, nullable=False),
            Column("started_at", Float, nullable=False),
            Column("seen_at", Float, nullable=False),
        ),
    ]
    return {table.name: table for table in tables}


V5_STATEMENTS = (
    "ALTER TABLE campaigns_deliveries ADD COLUMN reason VARCHAR(24)",
    "ALTER TABLE campaigns_delivery_occurrences ADD COLUMN unconfirmed BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE campaigns_delivery_claims ADD COLUMN retry_at FLOAT",
    "ALTER TABLE campaigns_delivery_claims ADD COLUMN retries INTEGER NOT NULL DEFAULT 0",
    "CREATE TABLE campaigns_delivery_reasons (task_id VARCHAR NOT NULL, occurrence VARCHAR(10) NOT NULL, "
    "status VARCHAR(12) NOT NULL, reason VARCHAR(24) NOT NULL, count BIGINT NOT NULL, "
    "PRIMARY KEY (task_id, occurrence, status, reason))",
)
"""Schema version 5, on top of version 4 (frozen: a later change adds another delta)."""


def v5_migrate(conn: Connection) -> None:
    """Version 4 -> 5. ``status`` grows to 12 characters for ``unconfirmed`` (PostgreSQL checks
    the length; widening a varchar rewrites nothing)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("ALTER TABLE campaigns_deliveries ALTER COLUMN status TYPE VARCHAR(12)")
    for statement in V5_STATEMENTS:
        conn.exec_driver_sql(statement)


def v5_tables(metadata: MetaData) -> dict[str, Table]:
    """The tables as version 5 leaves them (for queries; the migration is ``v5_migrate``)."""
    tables = v4_tables(metadata)
    deliveries = tables["campaigns_deliveries"]
    deliveries.c.status.type = String(12)
    deliveries.append_column(Column("reason", String(24)))
    tables["campaigns_delivery_occurrences"].append_column(Column("unconfirmed", BigInteger, nullable=False, default=0))
    claims = tables["campaigns_delivery_claims"]
    claims.append_column(Column("retry_at", Float))
    claims.append_column(Column("retries", Integer, nullable=False, default=0))
    reasons = Table(
        "campaigns_delivery_reasons",
        metadata,
        Column("task_id", String, nullable=False),
        Column("occurrence", String(10), nullable=False),
        Column("status", String(12), nullable=False),
        Column("reason", String(24), nullable=False),
        Column("count", BigInteger, nullable=False),
        PrimaryKeyConstraint("task_id", "occurrence", "status", "reason"),
    )
    tables[reasons.name] = reasons
    return tables


METADATA = MetaData()
_current = v5_tables(METADATA)

deliveries = _current["campaigns_deliveries"]
occurrences = _current["campaigns_delivery_occurrences"]
claims = _current["campaigns_delivery_claims"]
pacing = _current["campaigns_delivery_pacing"]
executors = _current["campaigns_executors"]
reasons = _current["campaigns_delivery_reasons"]
