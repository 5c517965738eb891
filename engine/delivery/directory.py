"""The user directory: who the users are, their attributes and their opt-outs.

``campaigns users import FILE.csv`` loads a CSV whose first row names the columns: ``user_id``
(required, at most 32 characters, no spaces, unique), optional ``opt_out`` (channels separated by
``|``) and any other columns, which are attributes. An empty cell is a missing attribute, not "".
A cell that is a canonical numeral (``1250``, ``-3``, ``2.5``; not ``007``, ``1.50``, ``1e3``, nor
more than 15 digits) is stored as a number, so ``gte: 1000`` compares numerically and a template
prints it exactly as written; every other cell is text.

A file with any bad row is rejected whole (every problem is reported with its line number) and
nothing is written: the import is one database transaction. The default merges (new users are
added; users in the file get the file's attributes and opt-outs, replacing what they had);
``replace=True`` makes the directory exactly the file.

Loading is the database's bulk path: PostgreSQL ``COPY`` (psycopg 3), SQLite ``executemany`` in
one transaction. The CSV is streamed; only the set of ids seen is kept, to find duplicates.

The directory lives in the state database unless ``platform.yaml`` names another
(``user_directory``): ``directory_store`` opens the right one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from engine.config.names import CHANNELS, USER_ID_MAX
from engine.errors import CampaignsError

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from engine.state import StateStore

MAX_LISTED_PROBLEMS = 20
_PROGRESS_EVERY = 20_000  # rows between progress callbacks
_MEMO_LIMIT = 100_000  # distinct cell values whose JSON fragment is remembered
_SQLITE_IMPORT_CACHE_KIB = 65_536  # page cache while importing: random-order ids touch the whole b-tree
_ID = re.compile(r"[^\s]{1,%d}" % USER_ID_MAX)
# A canonical numeral: no sign but "-", no leading zeros, no trailing fractional zeros, no exponent.
_NUMERAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]*[1-9])?")
_MAX_DIGITS = 15  # every such number is exact as a double, so both backends compare it the same


class DirectoryError(CampaignsError):
    """The user directory cannot be read or changed as asked."""


class NoDirectory(DirectoryError):
    """No user directory was ever imported, and something needs one."""


@dataclass(frozen=True)
class RowProblem:
    line: int
    message: str


class UserImportError(DirectoryError):
    """A users CSV was rejected; ``problems`` lists the first ones, ``count`` says how many."""

    def __init__(
        self, source: str, problems: list[RowProblem], count: int, consequence: str = "nothing was imported"
    ) -> None:
        self.source = source
        self.problems = problems
        self.count = count
        lines = [f"  line {problem.line}: {problem.message}" for problem in problems]
        if count > len(problems):
            lines.append(f"  ... and {count - len(problems):,} more")
        plural = "s" if count != 1 else ""
        super().__init__(f"{source} has {count:,} bad row{plural}; {consequence}:\n" + "\n".join(lines))


@dataclass(frozen=True)
class ImportResult:
    source: str
    rows: int  # users in the file
    attributes: tuple[str, ...]  # the file's attribute columns, in file order
    replace: bool
    added: int  # merge: users new to the directory; replace: the file's users
    updated: int  # merge: users already there whose attributes and opt-outs the file replaced
    removed: int  # replace: users the directory had before (all replaced by the file's)
    total: int  # users in the directory afterwards
    seconds: float

    def summary(self) -> str:
        """One line for people: ``Imported 1,000 users (3 attributes: a, b, c) in 0.2 s``."""
        names = sorted(self.attributes)
        shown = f"{len(names)} attribute{'s' if len(names) != 1 else ''}" + (f": {', '.join(names)}" if names else "")
        text = f"Imported {self.rows:,} user{'s' if self.rows != 1 else ''} ({shown}) in {self.seconds:.1f} s"
        if self.replace:
            if self.removed:
                text += f"; replaced the directory of {self.removed:,} users"
        elif self.updated:
            text += f"; {self.added:,} new, {self.updated:,} updated, {self.total:,} in the directory"
        return text


# -- values ------------------------------------------------------------------------------------


def parse_numeral(text: str) -> int | float | None:
    """The number a canonical numeral cell stands for, or None when the cell is text."""
    if not _NUMERAL.fullmatch(text):
        return None
    if "." in text:
        if len(text) - 1 - text.startswith("-") > _MAX_DIGITS:
            return None
        value = float(text)
        return value if repr(value) == text else None
    if len(text) - text.startswith("-") > _MAX_DIGITS or text == "-0":
        return None
    return int(text)


def _json_fragment(cell: str) -> str:
    """The JSON text of a cell's value: the numeral itself for a number, a JSON string otherwise."""
    if parse_numeral(cell) is not None:
        return cell
    return json.dumps(cell, ensure_ascii=False)


def parse_opt_out(cell: str) -> tuple[str | None, list[str]]:
    """``(canonical "a|b" or None, unknown channel names)`` of an opt_out cell."""
    names = {part.strip() for part in cell.split("|")} - {""}
    bad = sorted(names - set(CHANNELS))
    return ("|".join(sorted(names)) or None), bad


# -- reading a users CSV -------------------------------------------------------------------------


@dataclass
class UsersCsv:
    """A users CSV being read: header checked on open, rows streamed by ``rows()``.

    ``rows()`` yields ``(user_id, attributes JSON text, opt_out or None)`` and collects problems
    (``problems``, ``problem_count``) instead of raising, so one pass reports all of them. Used
    for the directory import and for CSV audiences.
    """

    name: str
    _open: Callable[[], BinaryIO]
    size: int
    columns: list[str] = field(default_factory=list)
    attributes: list[str] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    problem_count: int = 0
    rows_read: int = 0
    _duplicates: dict[int, str] = field(default_factory=dict)  # index in problems -> duplicated id

    @classmethod
    def from_path(cls, path: Path | str) -> UsersCsv:
        path = Path(path)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise DirectoryError(f"no such file: {path}") from None
        except OSError as problem:
            raise DirectoryError(f"cannot read {path}: {problem.strerror}") from None
        if path.is_dir():
            raise DirectoryError(f"{path} is a folder, not a CSV file")
        reader = cls(str(path), lambda: open(path, "rb"), size)  # noqa: SIM115 - closed by _text
        reader._read_header()
        return reader

    @classmethod
    def from_bytes(cls, content: bytes, name: str) -> UsersCsv:
        reader = cls(name, lambda: io.BytesIO(content), len(content))
        reader._read_header()
        return reader

    @contextmanager
    def _text(self) -> Iterator[tuple[Any, BinaryIO]]:
        try:
            raw = self._open()
        except OSError as problem:
            raise DirectoryError(f"cannot read {self.name}: {problem.strerror}") from None
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        try:
            yield csv.reader(text), raw
        finally:
            text.close()

    def _fail(self, reader: Any, problem: Exception) -> DirectoryError:
        line = getattr(reader, "line_num", 0) + 1
        if isinstance(problem, UnicodeDecodeError):
            line, byte = self._first_bad_utf8()
            return DirectoryError(
                f"{self.name} is not UTF-8 text (line {line}: byte 0x{byte:02x}); save it as UTF-8 CSV"
            )
        return DirectoryError(f"{self.name} line {line}: not a readable CSV row ({problem})")

    def _first_bad_utf8(self) -> tuple[int, int]:
        """(line, byte) of the first byte that is not UTF-8: the text layer decodes in chunks,
        so its error does not say where in the file the byte is."""
        import codecs

        decoder = codecs.getincrementaldecoder("utf-8")()
        lines = 1
        with self._open() as raw:
            while chunk := raw.read(1 << 20):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as bad:
                    start = max(bad.start - len(bad.object) + len(chunk), 0)
                    return lines + chunk.count(b"\n", 0, start), chunk[start] if start < len(chunk) else 0
                lines += chunk.count(b"\n")
        return lines, 0

    def _read_header(self) -> None:
        with self._text() as (reader, _raw):
            try:
                header = next(reader, None)
            except (UnicodeDecodeError, csv.Error) as problem:
                raise self._fail(reader, problem) from None
        if not header or header == [""]:
            raise DirectoryError(f"{self.name} is empty; its first row must name the columns (user_id, ...)")
        columns = [name.strip() for name in header]
        if "user_id" not in columns:
            hint = ""
            if len(columns) == 1 and any(sep in columns[0] for sep in ";\t"):
                hint = "; columns must be separated by commas"
            shown = ", ".join(repr(name) for name in columns[:8]) + (", ..." if len(columns) > 8 else "")
            raise DirectoryError(f"{self.name} has no user_id column (its first row names: {shown}){hint}")
        for number, name in enumerate(columns, 1):
            if not name:
                raise DirectoryError(f"{self.name}: column {number} of the first row has no name")
            if "\x00" in name:
                raise DirectoryError(f"{self.name}: column {number} of the first row holds a NUL character")
        seen: set[str] = set()
        twice = [name for name in columns if name in seen or seen.add(name)]  # type: ignore[func-returns-value]
        if twice:
            raise DirectoryError(f"{self.name}: the first row names column {twice[0]!r} twice")
        self.columns = columns
        self.attributes = [name for name in columns if name not in ("user_id", "opt_out")]

    def _problem(self, line: int, message: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_LISTED_PROBLEMS:
            self.problems.append(RowProblem(line, message))

    def rows(self, progress: Callable[[int, int], None] | None = None) -> Iterator[tuple[str, str, str | None]]:
        """Stream the data rows; after the first problem, rows are only checked, not yielded."""
        columns = self.columns
        width = len(columns)
        id_at = columns.index("user_id")
        opt_at = columns.index("opt_out") if "opt_out" in columns else None
        prefixes = [(columns.index(name), json.dumps(name, ensure_ascii=False) + ":") for name in self.attributes]
        seen: set[str] = set()
        remember = seen.add
        memo: dict[str, str] = {}
        recall = memo.get
        opt_memo: dict[str, tuple[str | None, list[str]]] = {}
        id_ok = _ID.fullmatch
        fragment = _json_fragment
        count = 0
        with self._text() as (reader, raw):
            try:
                next(reader)  # the header
                for row in reader:
                    if len(row) != width:
                        if not row or row == [""]:
                            continue  # a blank line
                        self._problem(reader.line_num, f"has {len(row)} cells; the first row names {width} columns")
                        continue
                    user_id = row[id_at]
                    if not id_ok(user_id) or user_id in seen:
                        self._bad_id(reader.line_num, user_id, seen)
                        continue
                    remember(user_id)
                    parts = []
                    for index, prefix in prefixes:
                        cell = row[index]
                        if cell:
                            text = recall(cell)
                            if text is None:
                                if "\x00" in cell:
                                    self._problem(reader.line_num, f"column {columns[index]!r} holds a NUL character")
                                    continue
                                text = fragment(cell)
                                if len(memo) < _MEMO_LIMIT:
                                    memo[cell] = text
                            parts.append(prefix + text)
                    opt_out = None
                    if opt_at is not None and row[opt_at]:
                        cell = row[opt_at]
                        parsed = opt_memo.get(cell)
                        if parsed is None:
                            parsed = opt_memo[cell] = parse_opt_out(cell)
                        opt_out, bad = parsed
                        if bad:
                            self._problem(
                                reader.line_num,
                                f"opt_out names unknown channel{'s' if len(bad) > 1 else ''} "
                                f"{', '.join(repr(name) for name in bad)} (channels: {', '.join(CHANNELS)})",
                            )
                            continue
                    count += 1
                    if progress is not None and count % _PROGRESS_EVERY == 0:
                        progress(raw.tell(), self.size)
                    if not self.problem_count:
                        yield user_id, "{" + ",".join(parts) + "}", opt_out
            except (UnicodeDecodeError, csv.Error) as problem:
                raise self._fail(reader, problem) from None
            if progress is not None:
                progress(self.size, self.size)
        self.rows_read = count

    def _bad_id(self, line: int, user_id: str, seen: set[str]) -> None:
        if not user_id:
            self._problem(line, "user_id is empty")
        elif len(user_id) > USER_ID_MAX:
            shown = repr(user_id) if len(user_id) <= 40 else repr(user_id[:40]) + "..."
            self._problem(line, f"user_id {shown} is {len(user_id)} characters; at most {USER_ID_MAX}")
        elif user_id in seen:
            self.problem_count += 1
            if len(self.problems) < MAX_LISTED_PROBLEMS:
                self._duplicates[len(self.problems)] = user_id
                self.problems.append(RowProblem(line, f"duplicate user_id {user_id!r}"))
        else:
            self._problem(line, f"user_id {user_id!r} contains white space")

    def explain_duplicates(self) -> None:
        """Add to each listed duplicate the line where the id first appears (a second pass,
        only when there are duplicates: the first pass keeps ids, not their lines)."""
        if not self._duplicates:
            return
        wanted = set(self._duplicates.values())
        at = self.columns.index("user_id")
        first: dict[str, int] = {}
        with self._text() as (reader, _raw):
            next(reader)
            for row in reader:
                if len(row) == len(self.columns) and row[at] in wanted and row[at] not in first:
                    first[row[at]] = reader.line_num
                    if len(first) == len(wanted):
                        break
        for index, user_id in self._duplicates.items():
            problem = self.problems[index]
            if first.get(user_id, problem.line) != problem.line:
                self.problems[index] = RowProblem(problem.line, f"{problem.message} (first on line {first[user_id]})")
        self._duplicates = {}

    def rejection(self, consequence: str = "nothing was imported") -> UserImportError:
        """The error for the problems found (call after ``rows()`` found some)."""
        self.explain_duplicates()
        return UserImportError(self.name, sorted(self.problems, key=lambda p: p.line), self.problem_count, consequence)


# -- importing -----------------------------------------------------------------------------------


class _Rejected(Exception):
    """Raised inside the import transaction so it rolls back; turned into UserImportError after."""


def import_users(
    store: StateStore,
    csv_path: Path | str,
    *,
    replace: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Load the users CSV at ``csv_path`` into the directory held by ``store``.

    ``progress(bytes_read, bytes_total)`` is called now and then. Raises UserImportError (every
    row problem, nothing written) or DirectoryError (unreadable file, bad header).
    """
    from sqlalchemy import func, select

    from engine.delivery import directory_tables as dt

    started = time.perf_counter()
    source = UsersCsv.from_path(csv_path)
    try:
        with store.writing() as conn:
            before = conn.execute(select(func.count()).select_from(dt.users)).scalar_one()
            if conn.dialect.name == "postgresql":
                _load_postgresql(conn, source.rows(progress), replace)
            else:
                _load_sqlite(conn, source.rows(progress), replace)
            if source.problem_count:
                raise _Rejected
            if conn.dialect.name == "postgresql":  # fresh statistics: audience queries plan on them
                conn.exec_driver_sql(f"ANALYZE {dt.users.name}")
            total = conn.execute(select(func.count()).select_from(dt.users)).scalar_one()
            _remember_attributes(conn, source.attributes, replace)
            conn.execute(
                dt.user_imports.insert().values(
                    imported_at=datetime.now(timezone.utc),
                    source=os.path.basename(source.name),
                    mode="replace" if replace else "merge",
                    rows=source.rows_read,
                    attributes=json.dumps(source.attributes, ensure_ascii=False),
                    total_users=total,
                )
            )
    except _Rejected:
        raise source.rejection() from None
    if replace:  # the previous directory is gone; the file is the directory now
        added, updated, removed = source.rows_read, 0, before
    else:  # a merge never removes, so the growth is the new users
        added = total - before
        updated, removed = source.rows_read - added, 0
    return ImportResult(
        source=source.name,
        rows=source.rows_read,
        attributes=tuple(source.attributes),
        replace=replace,
        added=added,
        updated=updated,
        removed=removed,
        total=total,
        seconds=time.perf_counter() - started,
    )


def _load_sqlite(conn: Connection, rows: Iterable[tuple[str, str, str | None]], replace: bool) -> None:
    """executemany through the DBAPI connection, inside the store's write transaction."""
    from sqlalchemy import delete
    from sqlalchemy.dialects.sqlite import insert

    from engine.delivery import directory_tables as dt

    u = dt.users
    if replace:
        conn.execute(delete(u))
    statement = insert(u).values(user_id="", attributes="", opt_out="")
    if not replace:
        statement = statement.on_conflict_do_update(
            index_elements=[u.c.user_id],
            set_={"attributes": statement.excluded.attributes, "opt_out": statement.excluded.opt_out},
        )
    compiled = statement.compile(dialect=conn.dialect)
    order = compiled.positiontup
    if order != ["user_id", "attributes", "opt_out"]:  # pragma: no cover - a SQLAlchemy change
        raise RuntimeError(f"unexpected parameter order {order}")
    raw = conn.connection.driver_connection
    cursor = raw.cursor()
    try:
        (old_cache,) = cursor.execute("PRAGMA cache_size").fetchone()
        cursor.execute(f"PRAGMA cache_size = -{_SQLITE_IMPORT_CACHE_KIB}")
        try:
            cursor.executemany(str(compiled), rows)
        finally:
            cursor.execute(f"PRAGMA cache_size = {int(old_cache)}")
    finally:
        cursor.close()


def _load_postgresql(conn: Connection, rows: Iterable[tuple[str, str, str | None]], replace: bool) -> None:
    """COPY into the table (replace) or into a temporary table merged with ON CONFLICT."""
    from psycopg import sql
    from sqlalchemy import column, delete, select, table
    from sqlalchemy.dialects.postgresql import insert

    from engine.delivery import directory_tables as dt

    u = dt.users
    raw = conn.connection.driver_connection
    stage = "campaigns_users_import"
    with raw.cursor() as cursor:
        if replace:
            conn.execute(delete(u))
            target = u.name
        else:
            cursor.execute(
                sql.SQL("CREATE TEMPORARY TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
                    sql.Identifier(stage), sql.Identifier(u.name)
                )
            )
            target = stage
        copy_sql = sql.SQL("COPY {} (user_id, attributes, opt_out) FROM STDIN").format(sql.Identifier(target))
        with cursor.copy(copy_sql) as copy:
            write = copy.write_row
            for row in rows:
                write(row)
    if not replace:
        staged = table(stage, column("user_id"), column("attributes"), column("opt_out"))
        statement = insert(u).from_select(
            ["user_id", "attributes", "opt_out"],
            select(staged.c.user_id, staged.c.attributes, staged.c.opt_out),
        )
        statement = statement.on_conflict_do_update(
            index_elements=[u.c.user_id],
            set_={"attributes": statement.excluded.attributes, "opt_out": statement.excluded.opt_out},
        )
        conn.execute(statement)


def _remember_attributes(conn: Connection, names: list[str], replace: bool) -> None:
    from sqlalchemy import delete, select

    from engine.delivery import directory_tables as dt

    a = dt.user_attributes
    if replace:
        conn.execute(delete(a))
        known: set[str] = set()
    else:
        known = set(conn.execute(select(a.c.name)).scalars())
    new = [{"name": name} for name in names if name not in known]
    if new:
        conn.execute(a.insert(), new)


# -- reading -------------------------------------------------------------------------------------


def known_attributes(store: StateStore) -> set[str] | None:
    """Attribute names the directory has (every column imported since the last ``--replace``),
    or None when no directory was ever imported."""
    from sqlalchemy import select

    from engine.delivery import directory_tables as dt

    with store.reading() as conn:
        if conn.execute(select(dt.user_imports.c.id).limit(1)).first() is None:
            return None
        return set(conn.execute(select(dt.user_attributes.c.name)).scalars())


def decode_attributes(value: Any) -> dict[str, Any]:
    """A stored attributes value as a fresh dict (SQLite gives JSON text, PostgreSQL a dict)."""
    if value is None:
        return {}
    if isinstance(value, str):
        return json.loads(value)
    return dict(value)


def lookup_users(store: StateStore, user_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """user_id -> attributes (with ``user_id`` itself) of the given users found in the directory;
    ids not in the directory are absent."""
    from sqlalchemy import select

    from engine.delivery import directory_tables as dt

    wanted = sorted(set(user_ids))
    found: dict[str, dict[str, Any]] = {}
    u = dt.users
    with store.reading() as conn:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            for user_id, attributes in conn.execute(select(u.c.user_id, u.c.attributes).where(u.c.user_id.in_(chunk))):
                values = decode_attributes(attributes)
                values["user_id"] = user_id
                found[user_id] = values
    return found


@dataclass(frozen=True)
class DirectoryInfo:
    users: int
    attributes: tuple[str, ...]
    last_import: datetime | None
    last_source: str | None


def directory_info(store: StateStore) -> DirectoryInfo | None:
    """Size, attribute names and last import of the directory (None: never imported)."""
    from sqlalchemy import func, select

    from engine.delivery import directory_tables as dt

    i = dt.user_imports
    with store.reading() as conn:
        last = conn.execute(select(i.c.imported_at, i.c.source).order_by(i.c.id.desc()).limit(1)).first()
        if last is None:
            return None
        users = conn.execute(select(func.count()).select_from(dt.users)).scalar_one()
        names = tuple(sorted(conn.execute(select(dt.user_attributes.c.name)).scalars()))
    return DirectoryInfo(users, names, last.imported_at, last.source)


# -- where the directory lives ---------------------------------------------------------------------


def user_directory_url(platform: Any) -> str | None:
    """The ``user_directory`` setting of a Platform model or of platform data (None: the state)."""
    if platform is None:
        return None
    value = platform.get("user_directory") if isinstance(platform, Mapping) else getattr(platform, "user_directory", None)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise DirectoryError("platform.yaml: 'user_directory' must be a database URL (sqlite:/// or postgresql://)")
    return value.strip()


def directory_store(platform_model: Any, state_store: StateStore, base_dir: Path | str) -> StateStore:
    """The store holding the user directory: ``state_store`` itself, or the database that
    ``platform.yaml`` names in ``user_directory`` (opened, and created if new; the caller closes
    it when it is not ``state_store`` -- or use ``open_directory``)."""
    url = user_directory_url(platform_model)
    if url is None:
        return state_store
    from engine.state import StateStore
    from engine.state.url import parse_state_url

    if parse_state_url(url, Path(base_dir)).display == state_store.display_url:
        return state_store
    return StateStore.open(url, base_dir)


@contextmanager
def open_directory(platform_model: Any, state_store: StateStore, base_dir: Path | str) -> Iterator[StateStore]:
    """``directory_store`` as a context manager that closes a separately opened directory."""
    store = directory_store(platform_model, state_store, base_dir)
    try:
        yield store
    finally:
        if store is not state_store:
            store.close()


def bulk_insert(conn: Connection, target: Any, columns: list[str], rows: Iterable[tuple]) -> None:
    """Plain INSERT of many rows by the backend's bulk path (PostgreSQL COPY, SQLite
    executemany), inside the caller's transaction. Used for cached audience lists."""
    if conn.dialect.name == "postgresql":
        from psycopg import sql

        raw = conn.connection.driver_connection
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(target.name), sql.SQL(", ").join(sql.Identifier(name) for name in columns)
        )
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            write = copy.write_row
            for row in rows:
                write(row)
        return
    compiled = target.insert().values({name: None for name in columns}).compile(dialect=conn.dialect)
    if list(compiled.positiontup) != columns:  # pragma: no cover - a SQLAlchemy change
        raise RuntimeError(f"unexpected parameter order {compiled.positiontup}")
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.executemany(str(compiled), rows)
    finally:
        cursor.close()
