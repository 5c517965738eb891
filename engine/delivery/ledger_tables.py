"""Tables of the delivery ledger (state schema version 4).

``v4_tables`` is frozen: the migration calls it on a private MetaData and the ledger's queries use
the same builder on ``METADATA``. A later change copies the builder to a new version.

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

Times are epoch seconds (doubles): the executor's clock, which a test run may simulate.
``user_id`` columns compare bytewise on both backends (``COLLATE "C"``), like the directory's.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
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

DELIVERY_STATUSES = ("pending", "sent", "failed", "expired", "capped", "suppressed")
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


METADATA = MetaData()
_current = v4_tables(METADATA)

deliveries = _current["campaigns_deliveries"]
occurrences = _current["campaigns_delivery_occurrences"]
claims = _current["campaigns_delivery_claims"]
pacing = _current["campaigns_delivery_pacing"]
executors = _current["campaigns_executors"]
