"""Turn the ``state:`` URL a user writes into what SQLAlchemy needs.

- ``sqlite:///.campaigns/state.db``  relative to the repository root (``base_dir``); the folder is
  created. ``sqlite:////abs/path.db`` is absolute.
- ``postgresql://user@host[:port]/db`` (also ``postgres://`` and ``postgresql+psycopg://``) runs on
  psycopg 3. A schema other than the role's default is chosen with ``?schema=NAME`` or libpq's
  ``?options=-csearch_path%3DNAME``; the store creates it if missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from engine.errors import UsageError

_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}\Z")  # \Z: "$" would let "public\n" through
_SEARCH_PATH = re.compile(r"-c\s*search_path\s*=\s*([^\s]+)")


@dataclass(frozen=True)
class StateLocation:
    """A parsed state URL: the SQLAlchemy URL plus what the store needs to know about it."""

    backend: Literal["sqlite", "postgresql"]
    url: URL
    display: str  # for messages: no password
    path: Path | None = None  # sqlite: the database file
    schema: str | None = None  # postgresql: explicit schema (None: the role's default)


def parse_state_url(raw: str, base_dir: Path) -> StateLocation:
    """Parse and normalise a state URL; raise UsageError with the reason when it is not usable."""
    text = (raw or "").strip()
    if not text:
        raise UsageError("state URL is empty")
    try:
        url = make_url(text)
    except ArgumentError:
        raise UsageError(f"state URL {text!r} is not a database URL (sqlite:///path or postgresql://...)") from None
    name = url.drivername
    if name in ("sqlite", "sqlite+pysqlite"):
        return _sqlite(url, Path(base_dir))
    if name in ("postgresql", "postgres", "postgresql+psycopg"):
        return _postgresql(url)
    raise UsageError(
        f"state URL scheme {name!r} is not supported: use sqlite:///path or postgresql://user@host/db"
    )


def _sqlite(url: URL, base_dir: Path) -> StateLocation:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        raise UsageError("state needs a SQLite file: use sqlite:///relative/path.db or sqlite:////absolute/path.db")
    if url.query:
        raise UsageError(f"SQLite state URL takes no options: {url.render_as_string(hide_password=True)}")
    path = Path(database).expanduser()
    if not path.is_absolute():
        path = Path(base_dir) / path
    path = path.resolve()
    return StateLocation(
        backend="sqlite",
        url=URL.create("sqlite+pysqlite", database=str(path)),
        display=f"sqlite:///{path}",
        path=path,
    )


def _postgresql(url: URL) -> StateLocation:
    query = dict(url.query)
    schema = query.pop("schema", None)
    if isinstance(schema, tuple):
        raise UsageError("state URL names more than one schema")
    options = query.get("options")
    if isinstance(options, tuple):
        options = " ".join(options)
    if options:
        found = _SEARCH_PATH.search(options)
        if found:
            path_schema = found.group(1).split(",")[0].strip().strip('"')
            if schema and schema != path_schema:
                raise UsageError(f"state URL names two schemas: {schema!r} and search_path {path_schema!r}")
            schema = path_schema
    if schema is not None and not _SCHEMA_NAME.match(schema):
        raise UsageError(f"state schema name {schema!r} is not a plain identifier (letters, digits, _)")
    if not url.database:
        raise UsageError("PostgreSQL state URL must name a database: postgresql://user@host/DATABASE")
    if schema and not (options and _SEARCH_PATH.search(options)):
        extra = f"-csearch_path={schema}"
        query["options"] = f"{options} {extra}" if options else extra
    query.setdefault("connect_timeout", "10")
    query.setdefault("application_name", "campaigns")
    final = url.set(drivername="postgresql+psycopg", query=query)
    shown = final.set(
        drivername="postgresql",
        query={k: v for k, v in final.query.items() if k not in ("connect_timeout", "application_name")},
    )
    return StateLocation(
        backend="postgresql",
        url=final,
        display=shown.render_as_string(hide_password=True),
        schema=schema,
    )
