"""The state store: one narrow, domain-level interface over SQLite or PostgreSQL.

Plan, apply, status and pilot see no tables or SQL: reads return plain records
(``engine.state.records``); every change made by an apply goes through one ``transaction()``,
which is a single database transaction ending in a compare-and-swap of the serial. Delivery's
ledger and user directory keep their own tables in this database (``ledger_tables``,
``directory_tables``) and reach them through ``reading()``/``writing()`` and
``engine.state.dialect``, the one place that knows SQLite from PostgreSQL.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from sqlalchemy import Connection, Engine, case, create_engine, delete, event, func, select, update
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from engine.clock import Clock
from engine.state import tables as t
from engine.state.errors import (
    LockNotFound,
    NotAStateDatabase,
    StaleState,
    StateConnectionError,
    StateError,
    StateLocked,
    StateNotFound,
)
from engine.state.locking import AdvisoryLock, FileLock, LockBackend, advisory_key, whoami
from engine.state.migrations import migrate, read_version
from engine.state.records import (
    Approval,
    HistoryEntry,
    LockInfo,
    PilotResult,
    PilotTestRun,
    ResourceVersion,
    StateMeta,
    StoredResource,
    TaskState,
    TaskStateWrite,
    canonical_json,
)
from engine.state.url import StateLocation, parse_state_url

_CHUNK = 500  # keys per IN (...) list: far below SQLite's and PostgreSQL's parameter limits
_LOCK_ROW = "state"
SQLITE_BUSY_TIMEOUT_S = 30.0


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _one_line(problem: BaseException) -> str:
    original = getattr(problem, "orig", None) or problem
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    return lines[0] if lines else type(original).__name__


@contextmanager
def _database_errors(where: str) -> Iterator[None]:
    """Driver failures become one-line StateErrors; our own errors pass through."""
    try:
        yield
    except StateError:
        raise
    except DBAPIError as problem:
        message = _one_line(problem)
        if "file is not a database" in message or "file is encrypted" in message:
            raise NotAStateDatabase(f"{where} is not a campaigns state: {message}") from None
        if "database is locked" in message:
            raise StateError(f"state database {where} stayed busy for {SQLITE_BUSY_TIMEOUT_S:g}s: {message}") from None
        raise StateError(f"state database error at {where}: {message}") from None
    except SQLAlchemyError as problem:
        raise StateError(f"state database error at {where}: {_one_line(problem)}") from None


def _sqlite_engine(location: StateLocation) -> Engine:
    engine = create_engine(location.url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Manage transactions ourselves (see "begin") instead of pysqlite's implicit ones.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")  # durable at checkpoints; safe with WAL
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front, so the compare-and-swap reads what it will write on.
        write = conn.get_execution_options().get("campaigns_write")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _postgres_identity(engine: Engine, location: StateLocation, *, create: bool = True) -> tuple[str, str | None]:
    """Connect once (clear error if we cannot), create the named schema if missing (only with
    ``create``), and return (database, schema) as the server sees them. Without ``create`` a
    missing schema comes back as None: there is no state there yet."""
    host = location.url.host or "localhost"
    port = location.url.port or 5432
    cargs, cparams = engine.dialect.create_connect_args(location.url)
    try:
        raw = engine.dialect.loaded_dbapi.connect(*cargs, **cparams)
    except Exception as problem:  # noqa: BLE001 - psycopg.OperationalError and friends
        message = " ".join(line.strip() for line in str(problem).splitlines() if line.strip())
        raise StateConnectionError(
            f"cannot connect to PostgreSQL at {host}:{port} (database {location.url.database!r}): {message}"
        ) from None
    try:
        with raw.cursor() as cursor:
            if location.schema and create:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key("schema", location.url.database or "", location.schema),))
                cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (location.schema,))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE SCHEMA "{location.schema}"')
            cursor.execute("SELECT current_database(), current_schema()")
            database, schema = cursor.fetchone()
            if location.schema and not create and schema != location.schema:
                return database, None  # the named schema does not exist (search_path skips it)
        raw.commit()
    except Exception as problem:  # noqa: BLE001
        raise StateConnectionError(f"cannot prepare the state at {location.display}: {_one_line(problem)}") from None
    finally:
        raw.close()
    if not schema and create:
        raise StateConnectionError(
            f"no schema to keep the state in at {location.display}: the search_path names none that exists; "
            "add ?schema=NAME to the URL"
        )
    return database, schema


class Transaction:
    """The writes of one apply. Made by ``StateStore.transaction``; valid only inside its block.

    Everything here happens in one database transaction that commits when the block ends
    (serial := expected + 1, compare-and-swap) or rolls back if it raises.
    """

    def __init__(self, conn: Connection, lineage: str, serial: int, now: datetime) -> None:
        self._conn = conn
        self.lineage = lineage
        self.serial = serial  # the serial this transaction commits
        self.now = now
        self._open = True
        self._history_written = False

    def _check(self) -> None:
        if not self._open:
            raise RuntimeError("the state transaction is over")

    def _digests_of(self, addresses: Sequence[str]) -> dict[str, str]:
        r = t.resources
        if len(addresses) > 4 * _CHUNK:  # one scan beats many IN lists
            wanted = set(addresses)
            rows = self._conn.execute(select(r.c.address, r.c.digest))
            return {address: digest for address, digest in rows if address in wanted}
        found: dict[str, str] = {}
        for chunk in _chunks(addresses):
            found.update(iter(self._conn.execute(select(r.c.address, r.c.digest).where(r.c.address.in_(chunk)))))
        return found

    def put_resources(self, resources: Iterable[ResourceVersion]) -> int:
        """Store these versions. Unchanged ones (same digest) keep their old serial and are not
        rewritten; new or changed ones get this transaction's serial. Returns how many were written."""
        self._check()
        items = list(resources)
        addresses = [item.address for item in items]
        if len(set(addresses)) != len(addresses):
            seen: set[str] = set()
            twice = sorted({a for a in addresses if a in seen or seen.add(a)})
            raise ValueError(f"resources given twice: {', '.join(twice[:5])}")
        existing = self._digests_of(addresses)
        changed = [item for item in items if existing.get(item.address) != item.digest]
        replaced = [item.address for item in changed if item.address in existing]
        for chunk in _chunks(replaced):
            self._conn.execute(delete(t.resources).where(t.resources.c.address.in_(chunk)))
        if changed:
            self._conn.execute(
                t.resources.insert(),
                [
                    {
                        "address": item.address,
                        "kind": item.kind,
                        "resource_id": item.id,
                        "digest": item.digest,
                        "body": item.canonical,
                        "serial": self.serial,
                    }
                    for item in changed
                ],
            )
        return len(changed)

    @property
    def connection(self) -> Connection:
        """This apply's connection, for packages that keep their own tables in the state
        (they write in the same all-or-nothing transaction)."""
        self._check()
        return self._conn

    def put_attachments(self, files: Iterable[tuple[str, str, bytes]]) -> int:
        """Store files by content digest: ``(digest, path, content)``; known digests are skipped."""
        self._check()
        items = {digest: (path, content) for digest, path, content in files}
        a = t.attachments
        known: set[str] = set()
        for chunk in _chunks(sorted(items)):
            known.update(self._conn.execute(select(a.c.digest).where(a.c.digest.in_(chunk))).scalars())
        rows = [
            {"digest": digest, "path": path, "size": len(content), "content": content, "serial": self.serial}
            for digest, (path, content) in items.items()
            if digest not in known
        ]
        if rows:
            self._conn.execute(a.insert(), rows)
        return len(rows)

    def delete_resources(self, addresses: Iterable[str]) -> int:
        """Forget these resources (addresses not stored are ignored). Returns how many were deleted."""
        self._check()
        keys = sorted(set(addresses))
        deleted = 0
        for chunk in _chunks(keys):
            deleted += self._conn.execute(delete(t.resources).where(t.resources.c.address.in_(chunk))).rowcount
        return deleted

    def set_task_states(self, states: Iterable[TaskStateWrite]) -> None:
        """Record task statuses. ``since`` moves to now only for tasks whose status changes."""
        self._check()
        items = list(states)
        ids = [item.task_id for item in items]
        if len(set(ids)) != len(ids):
            raise ValueError("a task's status is given twice")
        ts = t.task_states
        previous: dict[str, tuple[str, datetime]] = {}
        for chunk in _chunks(ids):
            for task_id, status, since in self._conn.execute(
                select(ts.c.task_id, ts.c.status, ts.c.since).where(ts.c.task_id.in_(chunk))
            ):
                previous[task_id] = (status, since)
        for chunk in _chunks([i for i in ids if i in previous]):
            self._conn.execute(delete(ts).where(ts.c.task_id.in_(chunk)))
        if items:
            rows = []
            for item in items:
                before = previous.get(item.task_id)
                since = before[1] if before and before[0] == item.status else self.now
                rows.append(
                    {
                        "task_id": item.task_id,
                        "status": item.status,
                        "content_digest": item.content_digest,
                        "since": since,
                        "updated_at": self.now,
                        "serial": self.serial,
                    }
                )
            self._conn.execute(ts.insert(), rows)

    def append_history(
        self,
        *,
        approval: Approval | None,
        summary: dict[str, Any],
        changes: list[Any],
        applied_by: str | None = None,
    ) -> None:
        """Record this apply in the history (at most once per transaction; serial = self.serial).
        ``applied_by`` defaults to ``user@host`` of this process."""
        self._check()
        if self._history_written:
            raise RuntimeError("one history entry per apply")
        if applied_by is None:
            user, host, _pid = whoami()
            applied_by = f"{user}@{host}"
        self._conn.execute(
            t.history.insert().values(
                serial=self.serial,
                lineage=self.lineage,
                applied_at=self.now,
                applied_by=applied_by,
                approval_kind=approval.kind if approval else None,
                approved_by=approval.approved_by if approval else None,
                reason=approval.reason if approval else None,
                pr_number=approval.pr_number if approval else None,
                pr_author=approval.author if approval else None,
                merge_commit=approval.merge_commit if approval else None,
                pr_title=approval.pr_title if approval else None,
                pr_url=approval.pr_url if approval else None,
                summary=canonical_json(summary),
                changes=canonical_json(changes),
            )
        )
        self._history_written = True


class _NoLock:
    """The lock of a state that does not exist: never held, never taken."""

    connection = None

    def try_acquire(self) -> bool:
        raise StateError("a state that does not exist yet cannot be locked")

    def release(self) -> None:
        pass

    def held_elsewhere(self) -> bool:
        return False

    @contextmanager
    def break_lock(self, describe: str) -> Iterator[None]:
        yield


class StateStore:
    """A campaigns state. Open with ``StateStore.open(url, base_dir)``; use as a context manager.

    ``exists`` is False for the empty, read-only stand-in that ``open(..., missing_ok=True)``
    returns when there is no state at the URL yet (its lineage is None, its serial 0).
    ``clock`` dates what the store records (task ``since``, apply and pilot-test times, the lock
    holder) when the caller gives no instant.
    """

    def __init__(
        self,
        engine: Engine,
        location: StateLocation,
        lock_backend: LockBackend,
        schema_version: int,
        *,
        clock: Clock | None = None,
        exists: bool = True,
    ) -> None:
        self._engine = engine
        self.location = location
        self._lock = lock_backend
        self._schema_version = schema_version
        self._held: LockInfo | None = None
        self.clock = clock or Clock()
        self.exists = exists

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        url: str,
        base_dir: Path | str = ".",
        *,
        create: bool = True,
        missing_ok: bool = False,
        clock: Clock | None = None,
    ) -> StateStore:
        """Open (and create, unless ``create`` is False) the state at ``url``, migrating its schema.

        Relative SQLite paths are resolved against ``base_dir`` (the repository root). Without
        ``create`` nothing is created (no folder, file, schema or table) and a missing state
        raises StateNotFound; with ``missing_ok`` too, a missing state opens as an empty,
        read-only stand-in (``exists`` False) so that plan, status and report can answer "from
        empty". A SQLite URL whose folder does not exist is always an error without ``create``.
        """
        location = parse_state_url(url, Path(base_dir))
        clock = clock or Clock()
        if missing_ok and create:
            raise ValueError("missing_ok only makes sense without create")
        if location.backend == "sqlite":
            assert location.path is not None
            if not location.path.exists() or (not create and location.path.is_file() and location.path.stat().st_size == 0):
                if not create:
                    if not location.path.parent.is_dir():
                        raise StateNotFound(
                            f"no campaigns state at {location.display}: the folder {location.path.parent} does not exist"
                        )
                    if missing_ok:
                        return cls._empty(location, clock)
                    raise StateNotFound(f"no campaigns state at {location.display}")
                try:
                    location.path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as problem:
                    raise StateConnectionError(
                        f"cannot create the folder for the state {location.path.parent}: {problem.strerror}"
                    ) from None
            elif location.path.is_dir():
                raise NotAStateDatabase(f"{location.path} is a folder, not a campaigns state file")
            engine = _sqlite_engine(location)
            lock: LockBackend = FileLock(location.path.with_name(location.path.name + ".lock"))
            migrate_key = None
        else:
            engine = create_engine(location.url)
            try:
                database, schema = _postgres_identity(engine, location, create=create)
            except BaseException:
                engine.dispose()
                raise
            if schema is None:  # only without create: the named schema does not exist
                engine.dispose()
                if missing_ok:
                    return cls._empty(location, clock)
                raise StateNotFound(f"no campaigns state at {location.display}")
            lock = AdvisoryLock(engine, advisory_key("lock", database, schema))
            migrate_key = advisory_key("migrate", database, schema)
        try:
            with _database_errors(location.display):
                version = migrate(engine, where=location.display, advisory_key=migrate_key, create=create, now=clock.now())
        except StateNotFound:
            engine.dispose()
            if missing_ok:
                return cls._empty(location, clock)
            raise
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, location, lock, version, clock=clock)

    @classmethod
    def _empty(cls, location: StateLocation, clock: Clock) -> StateStore:
        """An empty state in memory standing in for one that does not exist yet: every read
        answers as from a new state, every write is refused, nothing touches ``location``."""
        engine = create_engine("sqlite+pysqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
        version = migrate(engine, where="(empty state)", advisory_key=None, create=True, now=clock.now())
        return cls(engine, location, _NoLock(), version, clock=clock, exists=False)

    def _now(self) -> datetime:
        return self.clock.now()

    def close(self) -> None:
        """Release a lock still held and close every connection."""
        if self._held is not None:
            self._release(self._held)
        self._engine.dispose()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    @property
    def backend(self) -> Literal["sqlite", "postgresql"]:
        return self.location.backend

    @property
    def display_url(self) -> str:
        """The state URL for messages (no password; SQLite path absolute)."""
        return self.location.display

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for packages that keep their own tables in the state (user directory,
        delivery ledger); database errors become one-line StateErrors."""
        with self._read() as conn:
            yield conn

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A connection inside one committed-or-rolled-back transaction, for the same packages."""
        with self._write() as conn:
            yield conn

    def attachment(self, digest: str) -> bytes | None:
        """The content of a file stored by an apply, or None."""
        a = t.attachments
        with self._read() as conn:
            content = conn.execute(select(a.c.content).where(a.c.digest == digest)).scalar_one_or_none()
        return bytes(content) if content is not None else None

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with _database_errors(self.location.display), self._engine.connect() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        if not self.exists:
            raise StateNotFound(f"no campaigns state at {self.location.display} yet (nothing is written to it here)")
        with _database_errors(self.location.display):
            held = self._lock.connection if self._held is not None else None
            if held is not None:  # PostgreSQL while locked: write on the lock's own session
                with held.begin():
                    yield held
                return
            with self._engine.connect() as conn:
                conn.execution_options(campaigns_write=True)
                with conn.begin():
                    yield conn

    # -- reads -------------------------------------------------------------------------------

    def meta(self) -> StateMeta:
        """Lineage, serial and schema version (lineage None: the state does not exist yet)."""
        if not self.exists:
            return StateMeta(lineage=None, serial=0, schema_version=self._schema_version)
        with self._read() as conn:
            row = conn.execute(select(t.meta.c.lineage, t.meta.c.serial).where(t.meta.c.id == 1)).one_or_none()
            version = read_version(conn)
        if row is None:
            raise NotAStateDatabase(f"{self.display_url} is not a campaigns state: it has no lineage")
        return StateMeta(lineage=row.lineage, serial=row.serial, schema_version=version or 0)

    def resource_digests(self) -> dict[str, str]:
        """address -> content digest of every stored resource (the fast path of a no-op plan)."""
        with self._read() as conn:
            result = conn.exec_driver_sql(f"SELECT address, digest FROM {t.resources.name}")
            return {address: digest for address, digest in result}

    def resources(self, addresses: Iterable[str] | None = None, *, kind: str | None = None) -> dict[str, StoredResource]:
        """address -> stored resource, for all of them or only ``addresses`` / one ``kind``.
        Bodies are parsed lazily, on first access to ``.body``."""
        r = t.resources
        query = select(r.c.address, r.c.kind, r.c.resource_id, r.c.digest, r.c.serial, r.c.body)
        if kind is not None:
            query = query.where(r.c.kind == kind)
        with self._read() as conn:
            if addresses is None:
                rows = list(conn.execute(query.order_by(r.c.address)))
            else:
                rows = []
                for chunk in _chunks(sorted(set(addresses))):
                    rows.extend(conn.execute(query.where(r.c.address.in_(chunk))))
        return {
            row.address: StoredResource(
                address=row.address,
                kind=row.kind,
                id=row.resource_id,
                digest=row.digest,
                serial=row.serial,
                canonical=row.body,
            )
            for row in rows
        }

    def resource(self, address: str) -> StoredResource | None:
        """One stored resource, or None."""
        return self.resources([address]).get(address)

    def task_states(self) -> dict[str, TaskState]:
        """task id -> recorded status, for every task the state knows (completed ones included)."""
        ts = t.task_states
        with self._read() as conn:
            rows = conn.execute(select(ts).order_by(ts.c.task_id)).all()
        return {
            row.task_id: TaskState(
                task_id=row.task_id,
                status=row.status,
                content_digest=row.content_digest,
                since=row.since,
                updated_at=row.updated_at,
                serial=row.serial,
            )
            for row in rows
        }

    def pilot_tests(self, task_id: str | None = None, content_digest: str | None = None) -> list[PilotTestRun]:
        """Recorded pilot-test runs, oldest first, optionally of one task / one content digest."""
        pt = t.pilot_tests
        query = select(pt).order_by(pt.c.tested_at, pt.c.id)
        if task_id is not None:
            query = query.where(pt.c.task_id == task_id)
        if content_digest is not None:
            query = query.where(pt.c.content_digest == content_digest)
        with self._read() as conn:
            rows = conn.execute(query).all()
        runs: dict[str, list[Any]] = {}
        for row in rows:
            runs.setdefault(row.run_id, []).append(row)
        return [
            PilotTestRun(
                run_id=run_id,
                task_id=group[0].task_id,
                content_digest=group[0].content_digest,
                tested_at=group[0].tested_at,
                results=tuple(
                    PilotResult(tester=r.tester, channel=r.channel, passed=bool(r.passed), detail=r.detail)
                    for r in group
                ),
            )
            for run_id, group in runs.items()
        ]

    def passing_pilot_digests(self) -> dict[str, set[str]]:
        """task id -> content digests that have at least one passing run (every result passed)."""
        pt = t.pilot_tests
        failures = func.sum(case((pt.c.passed, 0), else_=1))
        query = (
            select(pt.c.task_id, pt.c.content_digest)
            .group_by(pt.c.run_id, pt.c.task_id, pt.c.content_digest)
            .having(failures == 0)
        )
        found: dict[str, set[str]] = {}
        with self._read() as conn:
            for task_id, digest in conn.execute(query):
                found.setdefault(task_id, set()).add(digest)
        return found

    def history(self, limit: int | None = None, *, with_changes: bool = True) -> list[HistoryEntry]:
        """The applies, oldest first (the last ``limit`` of them if given). Without ``with_changes``
        the (possibly large) change lists are not read and ``entry.changes`` is empty."""
        h = t.history
        columns = [c for c in h.c if with_changes or c.name != "changes"]
        query = select(*columns).order_by(h.c.serial.desc())
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            rows = conn.execute(query).all()
        entries = []
        for row in reversed(rows):
            approval = None
            if row.approval_kind:
                approval = Approval(
                    kind=row.approval_kind,
                    approved_by=row.approved_by,
                    reason=row.reason,
                    pr_number=row.pr_number,
                    author=row.pr_author,
                    merge_commit=row.merge_commit,
                    pr_title=row.pr_title,
                    pr_url=row.pr_url,
                )
            entries.append(
                HistoryEntry(
                    serial=row.serial,
                    lineage=row.lineage,
                    applied_at=row.applied_at,
                    applied_by=row.applied_by,
                    approval=approval,
                    summary=json.loads(row.summary),
                    changes_json=row.changes if with_changes else None,
                )
            )
        return entries

    # -- writes outside an apply ------------------------------------------------------------------

    def record_pilot_test(
        self,
        task_id: str,
        content_digest: str,
        results: Sequence[PilotResult],
        *,
        mark_testing: bool = True,
        now: datetime | None = None,
        run_id: str | None = None,
    ) -> PilotTestRun:
        """Record one pilot-test run of a task's content. With ``mark_testing``, a task whose status
        is ``draft`` moves to ``testing`` (for this content digest) in the same transaction.
        Does not change the serial: a pilot test is not an apply."""
        if not results:
            raise ValueError("a pilot test needs at least one result")
        when = now or self._now()
        run_id = run_id or str(uuid.uuid4())  # the caller's, when message ids were derived from it
        with self._write() as conn:
            conn.execute(
                t.pilot_tests.insert(),
                [
                    {
                        "run_id": run_id,
                        "task_id": task_id,
                        "content_digest": content_digest,
                        "tester": result.tester,
                        "channel": result.channel,
                        "passed": bool(result.passed),
                        "detail": result.detail or "",
                        "tested_at": when,
                    }
                    for result in results
                ],
            )
            if mark_testing:
                ts = t.task_states
                conn.execute(
                    update(ts)
                    .where(ts.c.task_id == task_id, ts.c.status == "draft")
                    .values(status="testing", content_digest=content_digest, since=when, updated_at=when)
                )
        return PilotTestRun(run_id, task_id, content_digest, when, tuple(results))

    # -- the apply transaction ----------------------------------------------------------------

    @contextmanager
    def transaction(
        self, expected_lineage: str, expected_serial: int, *, now: datetime | None = None
    ) -> Iterator[Transaction]:
        """One database transaction for one apply: all of it commits, or none of it.

        Raises StaleState (before anything is written) if the state's lineage or serial are not
        the expected ones. On a clean exit the serial becomes ``expected_serial + 1`` by a
        compare-and-swap; an exception inside the block rolls everything back and propagates.
        Take ``lock()`` around it so two applies do not race to the swap.
        """
        when = now or self._now()
        m = t.meta
        with self._write() as conn:
            row = conn.execute(select(m.c.lineage, m.c.serial).where(m.c.id == 1).with_for_update()).one_or_none()
            if row is None:
                raise NotAStateDatabase(f"{self.display_url} is not a campaigns state: it has no lineage")
            if (row.lineage, row.serial) != (expected_lineage, expected_serial):
                raise StaleState(expected_lineage, expected_serial, row.lineage, row.serial)
            tx = Transaction(conn, row.lineage, expected_serial + 1, when)
            try:
                yield tx
                swapped = conn.execute(
                    update(m)
                    .where(m.c.id == 1, m.c.lineage == expected_lineage, m.c.serial == expected_serial)
                    .values(serial=expected_serial + 1)
                ).rowcount
                if swapped != 1:  # cannot happen while the row is locked; never commit if it does
                    now_row = conn.execute(select(m.c.lineage, m.c.serial).where(m.c.id == 1)).one()
                    raise StaleState(expected_lineage, expected_serial, now_row.lineage, now_row.serial)
            finally:
                tx._open = False

    # -- the lock -------------------------------------------------------------------------------

    def _holder_row(self) -> LockInfo | None:
        lk = t.lock
        with self._read() as conn:
            row = conn.execute(select(lk).where(lk.c.name == _LOCK_ROW)).one_or_none()
        if row is None:
            return None
        return LockInfo(
            lock_id=row.lock_id,
            user=row.holder_user,
            host=row.holder_host,
            pid=row.holder_pid,
            operation=row.operation,
            acquired_at=row.acquired_at,
        )

    def lock_holder(self) -> LockInfo | None:
        """Who holds the lock. A recorded holder whose lock is no longer taken (its process died)
        comes back with ``held=False``; the next ``lock()`` overwrites it."""
        if self._held is not None:
            return self._held
        row = self._holder_row()
        with _database_errors(self.display_url):
            taken = self._lock.held_elsewhere()
        if row is None:
            if taken:  # taken, and the holder has not written its row yet (or cannot)
                return LockInfo("?", "?", "?", 0, "?", self._now(), held=True)
            return None
        return replace(row, held=taken)

    @contextmanager
    def lock(self, operation: str, timeout: float = 0) -> Iterator[LockInfo]:
        """Hold the state lock for the block; yields who we are as a LockInfo.

        Raises StateLocked(holder) if another process holds it, after polling for up to
        ``timeout`` seconds. The lock dies with this process even if it is SIGKILLed.
        """
        if self._held is not None:
            raise RuntimeError("this store already holds the state lock")
        started = time.monotonic()
        delay = 0.05
        with _database_errors(self.display_url):
            while not self._lock.try_acquire():
                waited = time.monotonic() - started
                if waited >= timeout:
                    raise StateLocked(self._current_holder(), waited=timeout)
                time.sleep(min(delay, max(timeout - waited, 0.01)))
                delay = min(delay * 2, 0.5)
        user, host, pid = whoami()
        info = LockInfo(str(uuid.uuid4()), user, host, pid, operation, self._now())
        try:
            lk = t.lock
            with self._write() as conn:
                conn.execute(delete(lk).where(lk.c.name == _LOCK_ROW))
                conn.execute(
                    lk.insert().values(
                        name=_LOCK_ROW,
                        lock_id=info.lock_id,
                        holder_user=user,
                        holder_host=host,
                        holder_pid=pid,
                        operation=operation,
                        acquired_at=info.acquired_at,
                    )
                )
        except BaseException:
            self._lock.release()
            raise
        self._held = info
        try:
            yield info
        finally:
            self._release(info)

    def _current_holder(self) -> LockInfo | None:
        """The holder row, re-read briefly in case the holder has the lock but not yet its row."""
        for _attempt in range(5):
            row = self._holder_row()
            if row is not None:
                return row
            time.sleep(0.05)
        return None

    def _release(self, info: LockInfo) -> None:
        self._held = None
        try:
            lk = t.lock
            with self._write() as conn:
                conn.execute(delete(lk).where(lk.c.name == _LOCK_ROW, lk.c.lock_id == info.lock_id))
        except Exception:  # noqa: BLE001 - the real lock below matters more than the row; a stale row is harmless
            pass
        finally:
            self._lock.release()

    def unlock(self, lock_id: str) -> LockInfo:
        """Break a stale lock (``campaigns state unlock LOCK_ID``); returns the holder removed.

        Raises LockNotFound when ``lock_id`` is not the recorded holder. PostgreSQL ends the
        session still holding the advisory lock, if any; SQLite refuses (LockStillHeld) while the
        holder process is alive, since its lock would vanish only with it.
        """
        wanted = lock_id.strip().lower()
        row = self._holder_row()
        if row is None or row.lock_id.lower() != wanted:
            if row is None:
                raise LockNotFound(f"no lock {lock_id}: the state is not locked")
            raise LockNotFound(f"no lock {lock_id}: the state is locked by {row.describe()}")
        with _database_errors(self.display_url), self._lock.break_lock(row.describe()):
            lk = t.lock
            with self._write() as conn:
                conn.execute(delete(lk).where(lk.c.name == _LOCK_ROW, lk.c.lock_id == row.lock_id))
        return replace(row, held=False)
