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

Loading is the database's bulk path (``engine.state.dialect.Dialect.bulk_copy``: PostgreSQL
``COPY``, SQLite ``executemany``) in one transaction. The CSV is streamed; only the set of ids seen is kept, to find duplicates.

The directory lives in the state database unless ``platform.yaml`` names another
(``user_directory``): ``directory_store`` opens the right one.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, delete, func, select, text

from engine.config.settings import locate, user_directory_url
from engine.config.usercsv import (  # noqa: F401 - re-exported: the directory's CSV rules
    CsvFileError,
    CsvRowsError,
    RowProblem,
    UsersCsv,
    parse_numeral,
    parse_opt_out,
)
from engine.errors import DirectoryError
from engine.state import StateStore
from engine.state import directory_tables as dt
from engine.state.dialect import Dialect
from engine.state.url import parse_state_url

_SQLITE_IMPORT_CACHE_KIB = 65_536  # page cache while importing: random-order ids touch the whole b-tree


class NoDirectory(DirectoryError):
    """No user directory was ever imported, and something needs one."""


class UserImportError(CsvRowsError, DirectoryError):
    """A users CSV was rejected; ``problems`` lists the first ones, ``count`` says how many."""


class ShrinkRefused(DirectoryError):
    """``--replace`` would remove more than half of the directory, and shrinking was not allowed."""


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


# -- importing -----------------------------------------------------------------------------------


class _Rejected(Exception):
    """Raised inside the import transaction so it rolls back; turned into UserImportError after."""


def import_users(
    store: StateStore,
    csv_path: Path | str,
    *,
    replace: bool = False,
    allow_shrink: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Load the users CSV at ``csv_path`` into the directory held by ``store``.

    ``progress(bytes_read, bytes_total)`` is called now and then. Raises UserImportError (every
    row problem, nothing written), DirectoryError (unreadable file, bad header) or ShrinkRefused
    (``replace`` would remove more than half of the users, an empty or truncated export most
    likely, and ``allow_shrink`` is not given; nothing written).
    """
    started = time.perf_counter()
    try:
        source = UsersCsv.from_path(csv_path)
    except CsvFileError as problem:
        raise DirectoryError(str(problem)) from None
    try:
        dialect = Dialect.for_store(store)
        with store.writing() as conn:
            before = conn.execute(select(func.count()).select_from(dt.users)).scalar_one()
            if replace and before and not allow_shrink:
                _replace_unless_shrinking(conn, dialect, source, before, progress)
            else:
                if replace:
                    conn.execute(delete(dt.users))
                with dialect.bulk_cache(conn, _SQLITE_IMPORT_CACHE_KIB):
                    dialect.bulk_copy(
                        conn, dt.users, _USER_COLUMNS, source.rows(progress), merge_on=None if replace else ("user_id",)
                    )
            if source.problem_count:
                raise _Rejected
            dialect.analyze(conn, dt.users)  # fresh statistics: audience queries plan on them
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
        raise UserImportError(source.name, source.sorted_problems(), source.problem_count) from None
    except CsvFileError as problem:  # found while streaming (a cell cut short, not UTF-8, ...)
        raise DirectoryError(str(problem)) from None
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


_STAGE = "campaigns_users_import"
_USER_COLUMNS = ("user_id", "attributes", "opt_out")


def _replace_unless_shrinking(
    conn: Connection, dialect: Dialect, source: UsersCsv, before: int, progress: Callable[[int, int], None] | None
) -> None:
    """``--replace`` of a non-empty directory: stage the file, count the users it would remove,
    refuse (ShrinkRefused, the transaction rolls back) when that is more than half of them,
    else swap the staged users in. Only this case pays for the staging; a first import and
    ``--allow-shrink`` load directly."""
    users = dt.users.name
    stage = dialect.stage_table(conn, dt.users, _STAGE)
    dialect.bulk_copy(conn, stage, _USER_COLUMNS, source.rows(progress))
    if source.problem_count:
        return
    dialect.key_stage(conn, stage, ("user_id",))
    leaving = conn.execute(
        text(f"SELECT count(*) FROM {users} u WHERE NOT EXISTS (SELECT 1 FROM {stage} s WHERE s.user_id = u.user_id)")
    ).scalar_one()
    if leaving * 2 > before:
        raise ShrinkRefused(
            f"{source.name} would remove {leaving:,} of the {before:,} users in the directory (more than half; "
            f"the file has {source.rows_read:,}); nothing was changed. Is the export empty or cut short? "
            "If the directory really should shrink, run again with --allow-shrink"
        )
    conn.execute(delete(dt.users))
    conn.execute(text(f"INSERT INTO {users} (user_id, attributes, opt_out) SELECT user_id, attributes, opt_out FROM {stage}"))
    conn.execute(text(f"DROP TABLE {stage}"))


def _remember_attributes(conn: Connection, names: list[str], replace: bool) -> None:
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
    """What ``users info`` tells of a directory."""

    users: int
    attributes: tuple[str, ...]
    last_import: datetime | None
    last_source: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "users": self.users,
            "attributes": list(self.attributes),
            "last_import": self.last_import.isoformat() if self.last_import else None,
            "last_source": self.last_source,
        }


def directory_info(store: StateStore) -> DirectoryInfo | None:
    """Size, attribute names and last import of the directory (None: never imported)."""
    i = dt.user_imports
    with store.reading() as conn:
        last = conn.execute(select(i.c.imported_at, i.c.source).order_by(i.c.id.desc()).limit(1)).first()
        if last is None:
            return None
        users = conn.execute(select(func.count()).select_from(dt.users)).scalar_one()
        names = tuple(sorted(conn.execute(select(dt.user_attributes.c.name)).scalars()))
    return DirectoryInfo(users, names, last.imported_at, last.source)


# -- where the directory lives ---------------------------------------------------------------------


def directory_store(platform_model: Any, state_store: StateStore, base_dir: Path | str) -> StateStore:
    """The store holding the user directory (``locate``): ``state_store`` itself, or the database
    that ``platform.yaml`` names in ``user_directory`` (opened, and created if new; the caller
    closes it when it is not ``state_store`` -- or use ``open_directory``)."""
    if user_directory_url(platform_model) is None:
        return state_store
    url = locate(platform_model, base_dir)
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
