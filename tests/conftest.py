"""Shared pytest fixtures.

State database fixtures (run a test on SQLite AND PostgreSQL by asking for ``state_url``):

- ``state_backend``  -- parametrized: ``"sqlite"`` and ``"postgresql"`` (the latter marked ``postgres``).
- ``state_url``      -- URL of a brand-new, empty state on that backend: a SQLite file in ``tmp_path``,
                        or a fresh schema (``?options=-csearch_path%3D<schema>``) in this session's
                        PostgreSQL database. Pass it to ``StateStore.open(url, base_dir)``, to
                        ``campaigns ... --state URL`` or ``CAMPAIGNS_STATE``.
- ``make_state_url`` -- factory: each call gives another brand-new state URL on the same backend.
- ``state_store``    -- ``StateStore`` opened on ``state_url`` (base_dir ``tmp_path``), closed after.
- ``pg_database_url`` (session) -- URL of the PostgreSQL database created for this test session
                        (``campaigns_test_<random>``, dropped at the end).
- ``pg_admin_url``   (session) -- URL of the server's ``postgres`` database, for admin statements.

PostgreSQL is ``postgresql://postgres@127.0.0.1:5432/postgres`` (trust auth) unless
``CAMPAIGNS_TEST_PG`` names another admin URL. When it cannot be reached the PostgreSQL tests are
skipped -- except when ``CI=true``, where they fail: CI must prove both backends.

Caches: the whole session keeps them (and their key) in a temporary folder of its own
(``CAMPAIGNS_CACHE_DIR``, ``CAMPAIGNS_CACHE_KEY``, set for in-process and child commands alike),
so no test reads or writes the real ~/.cache or ~/.local/share.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def isolated_caches(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every command of the session caches under a temporary folder, never the user's."""
    folder = tmp_path_factory.mktemp("campaigns-caches")
    saved = {name: os.environ.get(name) for name in ("CAMPAIGNS_CACHE_DIR", "CAMPAIGNS_CACHE_KEY")}
    os.environ["CAMPAIGNS_CACHE_DIR"] = str(folder / "cache")
    os.environ["CAMPAIGNS_CACHE_KEY"] = str(folder / "key" / "cache.key")
    try:
        yield folder
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


PG_ADMIN_URL = os.environ.get("CAMPAIGNS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _psycopg_conninfo(url: str) -> str:
    """libpq accepts postgresql:// URLs but not SQLAlchemy's '+driver' part."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _with_database(url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=database).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """The admin URL of the test PostgreSQL server; skip (or fail under CI=true) if unreachable."""
    import psycopg

    try:
        with psycopg.connect(_psycopg_conninfo(PG_ADMIN_URL), connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as problem:
        reason = f"PostgreSQL not reachable at {PG_ADMIN_URL}: {str(problem).strip().splitlines()[0]}"
        if _in_ci():
            pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run, not skip)")
        pytest.skip(reason)
    return PG_ADMIN_URL


@pytest.fixture(scope="session")
def pg_database_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh database for this test session, dropped (connections and all) at the end."""
    import psycopg

    name = f"campaigns_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_psycopg_conninfo(pg_admin_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(pg_admin_url, name)
    finally:
        with psycopg.connect(_psycopg_conninfo(pg_admin_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def state_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_state_url(state_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Callable[[], str]:
    """Factory of brand-new state URLs on this test's backend (SQLite file / PostgreSQL schema)."""
    if state_backend == "postgresql":
        database_url = request.getfixturevalue("pg_database_url")
        sep = "&" if "?" in database_url else "?"

        def make() -> str:
            return f"{database_url}{sep}options=-csearch_path%3Dt_{uuid.uuid4().hex[:16]}"

    else:

        def make() -> str:
            folder = tmp_path / f"state-{uuid.uuid4().hex[:8]}"
            folder.mkdir()  # a state URL whose folder does not exist is an error for commands that only read
            return f"sqlite:///{folder}/state.db"

    return make


@pytest.fixture
def state_url(make_state_url: Callable[[], str]) -> str:
    """URL of a brand-new, empty state (SQLite or PostgreSQL, per ``state_backend``)."""
    return make_state_url()


@pytest.fixture
def state_store(state_url: str, tmp_path: Path):
    """A StateStore opened on ``state_url``, closed after the test."""
    from engine.state import StateStore

    store = StateStore.open(state_url, tmp_path)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture(autouse=True)
def _no_github_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run on GitHub Actions, GITHUB_REPOSITORY would name this project's repository, and every
    apply with a fixture event (Codertocat/Hello-World) would be refused; a test sets it itself."""
    monkeypatch.delenv("GITHUB_REPOSITORY", raising=False)
