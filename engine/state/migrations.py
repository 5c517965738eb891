"""Schema migrations: an ordered list of steps, applied automatically when a state is opened.

To change the schema, append a ``Migration`` with the next version to ``MIGRATIONS``. A step is
either a function ``step(conn: sqlalchemy.Connection) -> None`` (preferred: build tables on a
private ``MetaData`` so the step never changes once released) or a list of SQL statements that
run on both SQLite and PostgreSQL. Never edit or reorder a released step.

All pending steps run in ONE transaction together with the version rows, after taking a
migration lock (PostgreSQL: a transaction-level advisory lock; SQLite: ``BEGIN IMMEDIATE``) and
re-reading the version, so two processes opening a fresh state at once migrate it exactly once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Connection, Engine, MetaData, func, inspect, select, text

from engine.state import control, directory_tables, ledger_tables
from engine.state import tables as t
from engine.state.errors import NotAStateDatabase, SchemaTooNew, StateNotFound

MigrationStep = Callable[[Connection], None] | Sequence[str]


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    step: MigrationStep

    def run(self, conn: Connection) -> None:
        if callable(self.step):
            self.step(conn)
        else:
            for statement in self.step:
                conn.exec_driver_sql(statement)


def _v1_initial(conn: Connection) -> None:
    """Create the first tables and the state's identity: a new lineage at serial 0."""
    metadata = MetaData()
    t.v1_tables(metadata)
    metadata.create_all(conn)
    created = conn.info.get("campaigns_now") or datetime.now(timezone.utc)
    conn.execute(t.meta.insert().values(id=1, lineage=str(uuid.uuid4()), serial=0, created_at=created))


def _v2_attachments(conn: Connection) -> None:
    metadata = MetaData()
    t.v2_tables(metadata)
    metadata.create_all(conn)


def _v3_directory(conn: Connection) -> None:
    # The user directory and audience tables (see engine.state.directory_tables).
    metadata = MetaData()
    directory_tables.v3_tables(metadata)
    metadata.create_all(conn)


def _v4_ledger(conn: Connection) -> None:
    # The delivery ledger's tables (see engine.state.ledger_tables).
    metadata = MetaData()
    ledger_tables.v4_tables(metadata)
    metadata.create_all(conn)


def _v5_reasons(conn: Connection) -> None:
    # Columns and a table added to the delivery ledger (see ledger_tables.v5_migrate).
    ledger_tables.v5_migrate(conn)


def _v6_control(conn: Connection) -> None:
    # Emergency pauses, the control log and failed applies (see engine.state.control).
    metadata = MetaData()
    control.v6_tables(metadata)
    metadata.create_all(conn)


MIGRATIONS: list[Migration] = [
    Migration(1, "lineage and serial, resources, task statuses, pilot tests, history, lock holder", _v1_initial),
    Migration(2, "attachments: files resources refer to, by content digest", _v2_attachments),
    Migration(3, "user directory, audience lists and refresh-once snapshots", _v3_directory),
    Migration(4, "delivery ledger, occurrence progress, claims, pacing, executors", _v4_ledger),
    Migration(5, "failure reasons, unconfirmed deliveries, retry backoff of claims", _v5_reasons),
    Migration(6, "emergency pauses, control log, failed applies", _v6_control),
]


def latest_version() -> int:
    return MIGRATIONS[-1].version if MIGRATIONS else 0


def _check_migration_list() -> None:
    versions = [migration.version for migration in MIGRATIONS]
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"state migrations must be numbered 1, 2, 3, ... in order; found {versions}")


def read_version(conn: Connection) -> int | None:
    """The recorded schema version, or None when the state has no version table yet."""
    if not inspect(conn).has_table(t.schema_version.name):
        return None
    return conn.execute(select(func.max(t.schema_version.c.version))).scalar() or 0


def _refuse_foreign(conn: Connection, where: str) -> None:
    """A SQLite file without our version table but with other tables is somebody else's database."""
    if conn.dialect.name != "sqlite":
        return
    others = conn.execute(
        text("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    ).scalars().all()
    if others:
        shown = ", ".join(sorted(others)[:5])
        raise NotAStateDatabase(f"{where} is not a campaigns state: it already holds other tables ({shown})")


def migrate(
    engine: Engine, *, where: str, advisory_key: int | None, create: bool, now: datetime | None = None
) -> int:
    """Bring the state's schema to ``latest_version()``; return the version it is at.

    ``now`` (default: the machine's clock) dates the new state and the migrations recorded.
    ``advisory_key`` (PostgreSQL) serialises concurrent migrators; on SQLite ``BEGIN IMMEDIATE``
    does. Raises SchemaTooNew when the state is ahead of this code, StateNotFound when
    ``create`` is False and there is no state, NotAStateDatabase when a SQLite file holds
    other tables.
    """
    _check_migration_list()
    latest = latest_version()
    with engine.connect() as conn:
        found = read_version(conn)
        if found is None and not create:
            _refuse_foreign(conn, where)
            raise StateNotFound(f"no campaigns state at {where}")
    if found is not None and found > latest:
        raise SchemaTooNew(found, latest, where)
    if found == latest:
        return found

    when = now or datetime.now(timezone.utc)
    with engine.connect() as conn:
        conn.execution_options(campaigns_write=True)
        conn.info["campaigns_now"] = when  # read by the first step (the state's created_at)
        try:
            with conn.begin():
                if advisory_key is not None:
                    conn.execute(select(func.pg_advisory_xact_lock(advisory_key)))
                found = read_version(conn)
                if found is None:
                    if not create:
                        raise StateNotFound(f"no campaigns state at {where}")
                    _refuse_foreign(conn, where)
                    found = 0
                if found > latest:
                    raise SchemaTooNew(found, latest, where)
                for migration in MIGRATIONS:
                    if migration.version <= found:
                        continue
                    migration.run(conn)
                    conn.execute(
                        t.schema_version.insert().values(
                            version=migration.version,
                            description=migration.description,
                            applied_at=when,
                        )
                    )
                    found = migration.version
        finally:
            conn.info.pop("campaigns_now", None)
    return found
