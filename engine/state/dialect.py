"""What differs between SQLite and PostgreSQL, for the code that writes SQL beside the store.

The delivery ledger, the user directory and the audience compiler run their own statements on
the store's connections (``StateStore.reading()`` / ``writing()``). Everything those statements
need that the two databases spell differently is here, and only here:

- placeholders: statements are written with ``?``; ``sql()`` gives PostgreSQL's ``%s``;
- row locks: a statement ending in ``FOR UPDATE`` (``SKIP LOCKED``) keeps it on PostgreSQL and
  drops it on SQLite, whose writers hold the whole database from ``BEGIN IMMEDIATE`` on;
- ONE bulk-copy path (``bulk_copy``): PostgreSQL ``COPY`` (psycopg 3), SQLite ``executemany``
  on the DBAPI cursor, optionally merging on a key (``ON CONFLICT DO UPDATE``);
- advisory locks scoped by database and schema (``engine.state.locking.advisory_key``), for a
  transaction or a session; SQLite needs none (its write lock serialises writers);
- ``ANALYZE`` after a bulk write (PostgreSQL plans on statistics; SQLite's are not kept);
- relaxed commits for writes that may be lost in a server crash (``synchronous_commit``; the
  store opens SQLite with ``PRAGMA synchronous = NORMAL`` already);
- JSON attribute access and text casts for the audience compiler, and reading many rows
  without holding them (server-side cursors, plain DBAPI tuples on SQLite).
"""

from __future__ import annotations

import fcntl
import os
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    Float,
    MetaData,
    Table,
    Text,
    case,
    cast,
    false,
    func,
    true,
    type_coerce,
)
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.schema import CreateTable

from engine.state.locking import advisory_key

if TYPE_CHECKING:
    from engine.state.store import StateStore

_ROW_LOCK = re.compile(r"\s+FOR UPDATE(?: SKIP LOCKED)?$")
_NUMBER_TYPES_SQLITE = ("integer", "real")


class Dialect:
    """The dialect of one state database (``for_store``), with the database and schema that
    scope its advisory locks."""

    def __init__(self, name: str, database: str = "", schema: str = "") -> None:
        if name not in ("sqlite", "postgresql"):
            raise ValueError(f"unknown database dialect {name!r}")
        self.name = name
        self.postgres = name == "postgresql"
        self.database = database
        self.schema = schema
        self._translated: dict[str, str] = {}

    @property
    def parses_json_per_call(self) -> bool:
        """SQLite parses a JSON document again at every ``json_*`` call (PostgreSQL's JSONB is
        parsed once), so queries reading many attributes of a row extract them once first."""
        return not self.postgres

    @classmethod
    def for_store(cls, store: StateStore) -> Dialect:
        location = store.location
        return cls(store.backend, str(location.url.database), str(location.schema))

    # -- statements ----------------------------------------------------------------------------

    def sql(self, statement: str) -> str:
        """``statement`` (``?`` placeholders, optional trailing row lock) in this dialect."""
        found = self._translated.get(statement)
        if found is None:
            found = statement.replace("?", "%s") if self.postgres else _ROW_LOCK.sub("", statement)
            self._translated[statement] = found
        return found

    def run(self, conn: Connection, statement: str, params: Any = ()) -> Any:
        """Execute a ``?`` statement (a list of tuples runs it once per tuple)."""
        return conn.exec_driver_sql(self.sql(statement), params)

    def relax_commit(self, conn: Connection) -> None:
        """This transaction's commit need not wait for the WAL flush (only a database server crash
        in the next fraction of a second could lose it). SQLite: already ``synchronous = NORMAL``."""
        if self.postgres:
            conn.exec_driver_sql("SET LOCAL synchronous_commit TO off")

    def analyze(self, conn: Connection, table: Table | str) -> None:
        """Fresh PostgreSQL statistics after a bulk write, so the planner sees the new rows."""
        if self.postgres:
            conn.exec_driver_sql(f"ANALYZE {table if isinstance(table, str) else table.name}")

    # -- bulk writes ---------------------------------------------------------------------------

    def bulk_copy(
        self,
        conn: Connection,
        table: Table | str,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
        *,
        merge_on: Sequence[str] | None = None,
    ) -> None:
        """Insert many rows by the backend's bulk path, inside the caller's transaction:
        PostgreSQL ``COPY``, SQLite ``executemany``. ``rows`` is read once, as a stream. With
        ``merge_on`` (``table`` a Table), a row whose key exists replaces the other columns."""
        name = table if isinstance(table, str) else table.name
        if self.postgres:
            target = name
            if merge_on is not None:
                target = "campaigns_bulk_merge"
                self.stage_table(conn, table, target)
            self._copy(conn, target, columns, rows)
            if merge_on is not None:
                kept = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in merge_on)
                listed = ", ".join(columns)
                conn.exec_driver_sql(
                    f"INSERT INTO {name} ({listed}) SELECT {listed} FROM {target} "
                    f"ON CONFLICT ({', '.join(merge_on)}) DO UPDATE SET {kept}"
                )
                conn.exec_driver_sql(f"DROP TABLE {target}")
            return
        statement = f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        if merge_on is not None:
            kept = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in merge_on)
            statement += f" ON CONFLICT ({', '.join(merge_on)}) DO UPDATE SET {kept}"
        cursor = conn.connection.driver_connection.cursor()
        try:
            cursor.executemany(statement, rows)
        finally:
            cursor.close()

    def _copy(self, conn: Connection, name: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        from psycopg import sql  # only on PostgreSQL: psycopg is not needed for SQLite states

        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(name), sql.SQL(", ").join(sql.Identifier(column) for column in columns)
        )
        with conn.connection.driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
            write = copy.write_row
            for row in rows:
                write(row)

    def stage_table(self, conn: Connection, like: Table, name: str) -> str:
        """A temporary table shaped like ``like`` (keys included), dropped at commit on
        PostgreSQL; returns the name to use in statements."""
        if self.postgres:
            conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {name} (LIKE {like.name} INCLUDING DEFAULTS) ON COMMIT DROP")
            return name
        create = str(CreateTable(like.to_metadata(MetaData(), name=name)).compile(dialect=sqlite_dialect.dialect()))
        conn.exec_driver_sql(create.replace("CREATE TABLE ", "CREATE TEMPORARY TABLE ", 1))
        return f"temp.{name}"

    def key_stage(self, conn: Connection, stage: str, key: Sequence[str]) -> None:
        """Give a loaded PostgreSQL stage its primary key (built once, after the COPY); SQLite's
        stage has it from the start (a WITHOUT ROWID table is its key)."""
        if self.postgres:
            conn.exec_driver_sql(f"ALTER TABLE {stage} ADD PRIMARY KEY ({', '.join(key)})")

    def bulk_cache(self, conn: Connection, kib: int) -> Any:
        """A bigger SQLite page cache for one bulk write (a context manager; PostgreSQL: none)."""
        return nullcontext() if self.postgres else _sqlite_cache(conn, kib)

    # -- advisory locks ------------------------------------------------------------------------

    def advisory_key(self, purpose: str) -> int:
        """The advisory lock key of ``purpose`` in this database and schema."""
        return advisory_key(purpose, self.database, self.schema)

    def lock_transaction(self, conn: Connection, purpose: str) -> None:
        """Serialise the writers of ``purpose`` until this transaction ends (PostgreSQL
        ``pg_advisory_xact_lock``; SQLite's ``BEGIN IMMEDIATE`` already serialises every writer)."""
        if self.postgres:
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (self.advisory_key(purpose),))

    def lock_session(self, conn: Connection, purpose: str) -> None:
        """Hold ``purpose`` for the life of ``conn``'s session (PostgreSQL only)."""
        conn.exec_driver_sql("SELECT pg_advisory_lock(%s)", (self.advisory_key(purpose),))
        conn.commit()  # the session lock outlives the transaction

    def held_by_a_session(self, conn: Connection, purpose: str) -> bool:
        """Whether some other session holds ``purpose`` right now (PostgreSQL only)."""
        key = self.advisory_key(purpose)
        got = conn.exec_driver_sql("SELECT pg_try_advisory_lock(%s)", (key,)).scalar()
        if got:
            conn.exec_driver_sql("SELECT pg_advisory_unlock(%s)", (key,))
        return not got

    # -- reading -------------------------------------------------------------------------------

    def chunks(self, store: StateStore, statement: str, params: Sequence[Any], key: tuple[str, str], chunk: int) -> Iterator[Sequence[Any]]:
        """The rows of ``statement`` (a ``?`` SELECT with a WHERE and no ORDER BY) in ``key``
        order, ``chunk`` rows at a time, in constant memory. PostgreSQL: one query on a named
        server-side cursor (planned for its first rows). SQLite: keyset chunks (each from where
        the last ended, in its own short read), so no read transaction stays open meanwhile."""
        order = f" ORDER BY {key[0]}, {key[1]}"
        if self.postgres:
            with store.reading() as conn:
                conn.exec_driver_sql("SELECT 1")  # a transaction: a named cursor lives in one
                raw = conn.connection.driver_connection
                with raw.cursor(name=f"campaigns_chunks_{uuid.uuid4().hex[:12]}") as cursor:
                    cursor.itersize = chunk
                    cursor.execute(self.sql(statement + order), tuple(params))
                    while True:
                        rows = cursor.fetchmany(chunk)
                        if not rows:
                            return
                        yield rows
        after: tuple[Any, Any] | None = None
        while True:
            text, values = statement, list(params)
            if after is not None:
                text += f" AND ({key[0]}, {key[1]}) > (?, ?)"  # a range of the primary key
                values.extend(after)
            with store.reading() as conn:
                rows = conn.exec_driver_sql(text + order + " LIMIT ?", (*values, chunk)).all()
            if rows:
                yield rows
            if len(rows) < chunk:
                return
            after = (rows[-1][0], rows[-1][1])

    def streams(self, conn: Connection, queries: Sequence[Any], batch_size: int) -> tuple[list[Iterator[Sequence[Any]]], list[Any]]:
        """Each Core SELECT read in batches of plain rows from one snapshot of ``conn``'s
        transaction: ``(sources, results)`` (close the results when done). PostgreSQL: server-side
        cursors planned to read everything; SQLite: DBAPI cursors (tuples cost a third less than
        Row objects per row)."""
        if self.postgres:
            # a cursor is planned for its first rows (an index scan: random heap reads); every row
            # is read here, so let the planner pick the plan that is fastest for all of them
            conn.exec_driver_sql("SET LOCAL cursor_tuple_fraction = 1.0")
            results = [conn.execution_options(stream_results=True, yield_per=batch_size).execute(q) for q in queries]
            return [_partitions(result) for result in results], results
        conn.exec_driver_sql("SELECT 1")  # begin: every cursor below reads one snapshot
        cursors = [self._sqlite_cursor(conn, query) for query in queries]
        return [_fetchmany(cursor, batch_size) for cursor in cursors], cursors

    @staticmethod
    def _sqlite_cursor(conn: Connection, query: Any) -> Any:
        """The query on a DBAPI cursor of ``conn``; SQL and parameters from SQLAlchemy's compiler."""
        compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
        params = compiled.construct_params()
        args = tuple(params[name] for name in compiled.positiontup)
        if not all(value is None or type(value) in (str, int, float) for value in args):  # pragma: no cover
            raise TypeError(f"unexpected parameter types in a membership query: {args!r}")
        cursor = conn.connection.driver_connection.cursor()
        cursor.execute(compiled.string, args)
        return cursor

    # -- expressions ---------------------------------------------------------------------------

    def as_text(self, column: Any) -> Any:
        """A JSON column as JSON text (psycopg's jsonb-to-dict costs twice json.loads)."""
        return cast(column, Text) if self.postgres else column

    def attribute(self, column: Any, name: str) -> JsonAttribute:
        """One attribute of a JSON document column (see ``JsonAttribute``)."""
        return _PostgresAttribute(column, name) if self.postgres else _SqliteAttribute(column, name)


class ProcessLocks:
    """Named locks that die with the process holding them (a ``kill -9`` included), within one
    state: PostgreSQL session advisory locks (``purpose`` + name, scoped by database and schema)
    on a connection kept open; SQLite ``flock`` on ``<database>.<folder>/<name>``. This process
    holds at most one of them."""

    def __init__(self, store: StateStore, folder: str, purpose: str) -> None:
        self.store = store
        self.dialect = Dialect.for_store(store)
        self.purpose = purpose
        self._conn_cm: Any = None
        self._fd: int | None = None
        self._name: str | None = None
        self._dir = None
        if not self.dialect.postgres:
            assert store.location.path is not None
            self._dir = store.location.path.with_name(store.location.path.name + "." + folder)

    def hold(self, name: str) -> None:
        self._name = name
        if self.dialect.postgres:
            self._conn_cm = self.store.reading()
            self.dialect.lock_session(self._conn_cm.__enter__(), self.purpose + name)
            return
        assert self._dir is not None
        self._dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._dir / name, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._fd = fd

    def release(self) -> None:
        if self._conn_cm is not None:
            try:
                self._conn_cm.__exit__(None, None, None)  # closing the session drops the lock
            except Exception:  # noqa: BLE001 - best effort at exit
                pass
            self._conn_cm = None
        if self._fd is not None:
            assert self._dir is not None and self._name is not None
            try:
                os.unlink(self._dir / self._name)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None

    def held(self, names: Sequence[str]) -> set[str]:
        """Which of ``names`` some other process holds right now. On SQLite the file of a lock
        nobody holds is removed (its process is gone and a name is never used again)."""
        living: set[str] = set()
        if self.dialect.postgres:
            with self.store.reading() as conn:
                living.update(name for name in names if self.dialect.held_by_a_session(conn, self.purpose + name))
                conn.commit()
            return living
        assert self._dir is not None
        for name in names:
            try:
                fd = os.open(self._dir / name, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                continue  # no file: it exited (or never ran here)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                living.add(name)
            else:
                try:
                    os.unlink(self._dir / name)
                except OSError:
                    pass
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        return living


class WriteQueue:
    """Write transactions of one state, queued for on SQLite: writers wait on an ``flock`` of
    ``<database>.<suffix>`` first, because SQLite's own busy handler polls with sleeps of up to
    100 ms, which idles the database between two processes' short transactions; the kernel
    wakes the next one at once. PostgreSQL: the store's transaction as it is (row locks queue)."""

    def __init__(self, store: StateStore, suffix: str) -> None:
        self.store = store
        self._fd: int | None = None
        self._path = None
        if not Dialect.for_store(store).postgres and store.location.path is not None:
            self._path = store.location.path.with_name(store.location.path.name + "." + suffix)

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        if self._path is None:
            with self.store.writing() as conn:
                yield conn
            return
        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            with self.store.writing() as conn:
                yield conn
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class JsonAttribute:
    """Never-NULL tests ``exists``, ``is_number``, ``is_text`` and the values ``number`` and
    ``text`` (compared bytewise) of one attribute; ``text_column`` makes one of a text column."""

    exists: Any
    is_number: Any
    is_text: Any
    number: Any
    text: Any

    @classmethod
    def text_column(cls, column: Any) -> JsonAttribute:
        found = cls()
        found.exists, found.is_number, found.is_text = true(), false(), true()
        found.number = found.text = column
        return found


class _SqliteAttribute(JsonAttribute):
    """JSON text with SQLite's JSON1 functions."""

    def __init__(self, column: Any, name: str) -> None:
        path = f"$.{name}"  # name matches [A-Za-z][A-Za-z0-9_]*; the path is a bound parameter
        kind = func.coalesce(func.json_type(column, path), "")
        value = func.json_extract(column, path)
        self.exists = func.json_type(column, path).is_not(None)
        self.is_number = kind.in_(_NUMBER_TYPES_SQLITE)
        self.is_text = kind == "text"
        self.number = value
        self.text = value


class _PostgresAttribute(JsonAttribute):
    """JSONB on PostgreSQL."""

    def __init__(self, column: Any, name: str) -> None:
        document = type_coerce(column, JSONB())
        node = document[name]
        kind = func.coalesce(func.jsonb_typeof(node), "")
        self.exists = func.jsonb_typeof(node).is_not(None)
        self.is_number = kind == "number"
        self.is_text = kind == "string"
        # CASE: the cast runs only on numbers, whatever order the planner evaluates conditions in
        self.number = case((func.jsonb_typeof(node) == "number", cast(document[name].astext, Float)))
        self.text = document[name].astext.collate("C")


@contextmanager
def _sqlite_cache(conn: Connection, kib: int) -> Iterator[None]:
    cursor = conn.connection.driver_connection.cursor()
    try:
        (old,) = cursor.execute("PRAGMA cache_size").fetchone()
        cursor.execute(f"PRAGMA cache_size = -{kib}")
        try:
            yield
        finally:
            cursor.execute(f"PRAGMA cache_size = {int(old)}")
    finally:
        cursor.close()


def _partitions(result: Any) -> Iterator[Sequence[Any]]:
    yield from result.partitions()


def _fetchmany(cursor: Any, size: int) -> Iterator[Sequence[Any]]:
    while True:
        rows = cursor.fetchmany(size)
        if not rows:
            return
        yield rows

