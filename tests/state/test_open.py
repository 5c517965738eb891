"""Opening a state: creation, migrations, URLs and the errors a user sees."""

from __future__ import annotations

import multiprocessing
import sqlite3
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from engine.errors import CampaignsError, UsageError
from engine.state import NotAStateDatabase, SchemaTooNew, StateConnectionError, StateNotFound, StateStore
from engine.state.migrations import latest_version
from engine.state.url import parse_state_url


def _sql(store: StateStore, statement: str) -> list[tuple]:
    with store._engine.begin() as conn:  # test-only peek at the tables
        result = conn.execute(text(statement))
        return [tuple(row) for row in result] if result.returns_rows else []


def test_a_new_state_has_a_lineage_and_serial_zero(state_store: StateStore, state_backend: str) -> None:
    meta = state_store.meta()
    assert uuid.UUID(meta.lineage).version == 4
    assert meta.serial == 0
    assert meta.schema_version == latest_version()
    assert state_store.backend == state_backend
    assert state_store.resource_digests() == {}
    assert state_store.history() == []
    assert state_store.task_states() == {}
    assert state_store.lock_holder() is None


def test_two_new_states_have_different_lineages(make_state_url, tmp_path: Path) -> None:
    with StateStore.open(make_state_url(), tmp_path) as one, StateStore.open(make_state_url(), tmp_path) as two:
        assert one.meta().lineage != two.meta().lineage


def test_reopening_keeps_lineage_and_does_not_rerun_migrations(state_url: str, tmp_path: Path) -> None:
    with StateStore.open(state_url, tmp_path) as store:
        first = store.meta()
        versions = _sql(store, "SELECT version, applied_at FROM campaigns_schema_version ORDER BY version")
    with StateStore.open(state_url, tmp_path) as store:
        assert store.meta() == first
        assert _sql(store, "SELECT version, applied_at FROM campaigns_schema_version ORDER BY version") == versions
    assert [v for v, _ in versions] == list(range(1, latest_version() + 1))


def test_a_state_from_a_newer_campaigns_is_refused(state_url: str, tmp_path: Path) -> None:
    with StateStore.open(state_url, tmp_path) as store:
        _sql(
            store,
            "INSERT INTO campaigns_schema_version (version, description, applied_at) "
            "VALUES (999, 'from the future', CURRENT_TIMESTAMP)",
        )
    with pytest.raises(SchemaTooNew, match=r"schema version 999 .* newer than this campaigns supports"):
        StateStore.open(state_url, tmp_path)


def test_create_false_refuses_a_missing_state(state_url: str, tmp_path: Path) -> None:
    with pytest.raises(StateNotFound, match="no campaigns state"):
        StateStore.open(state_url, tmp_path, create=False)
    with StateStore.open(state_url, tmp_path):
        pass
    with StateStore.open(state_url, tmp_path, create=False) as store:
        assert store.meta().serial == 0


def _open_and_report(url: str, base_dir: str, queue) -> None:  # runs in a child process
    with StateStore.open(url, base_dir) as store:
        queue.put(store.meta().lineage)


def test_processes_opening_a_fresh_state_at_once_create_it_once(state_url: str, tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    children = [context.Process(target=_open_and_report, args=(state_url, str(tmp_path), queue)) for _ in range(4)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
        assert child.exitcode == 0
    lineages = {queue.get(timeout=5) for _ in children}
    assert len(lineages) == 1
    with StateStore.open(state_url, tmp_path) as store:
        assert store.meta().lineage in lineages
        assert _sql(store, "SELECT count(*) FROM campaigns_schema_version") == [(latest_version(),)]
        assert _sql(store, "SELECT count(*) FROM campaigns_meta") == [(1,)]


# -- SQLite specifics ------------------------------------------------------------------------------


def test_relative_sqlite_path_is_under_base_dir_and_its_folder_is_created(tmp_path: Path) -> None:
    with StateStore.open("sqlite:///.campaigns/state.db", tmp_path) as store:
        assert store.backend == "sqlite"
        store.meta()
    assert (tmp_path / ".campaigns" / "state.db").is_file()


def test_sqlite_pragmas(tmp_path: Path) -> None:
    with StateStore.open("sqlite:///state.db", tmp_path) as store:
        with store._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


def test_a_file_that_is_not_sqlite_is_not_a_state(tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("just some text, long enough to be a header of something " * 4)
    with pytest.raises(NotAStateDatabase, match="is not a campaigns state"):
        StateStore.open("sqlite:///notes.db", tmp_path)


def test_a_sqlite_database_of_another_application_is_not_taken_over(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "app.db") as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    with pytest.raises(NotAStateDatabase, match=r"other tables \(customers\)"):
        StateStore.open("sqlite:///app.db", tmp_path)


@pytest.mark.parametrize(
    "url, message",
    [
        ("", "empty"),
        ("mysql://u@h/db", "not supported"),
        ("sqlite://", "needs a SQLite file"),
        ("sqlite:///:memory:", "needs a SQLite file"),
        ("postgresql://u@h", "must name a database"),
        ("postgresql://u@h/db?schema=bad-name", "not a plain identifier"),
        ("postgresql://u@h/db?schema=public%0A", "not a plain identifier"),  # "$" let the newline through
        ("postgresql://u@h/db?schema=a&options=-csearch_path%3Db", "two schemas"),
    ],
)
def test_unusable_urls_are_usage_errors(url: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=message):
        StateStore.open(url, tmp_path)


def test_postgres_urls_run_on_psycopg_with_the_named_schema(tmp_path: Path) -> None:
    plain = parse_state_url("postgresql://alice:secret@db.example:6543/campaigns", tmp_path)
    assert plain.url.drivername == "postgresql+psycopg"
    assert plain.schema is None
    assert "secret" not in plain.display
    by_param = parse_state_url("postgres://alice@db/campaigns?schema=prod", tmp_path)
    assert by_param.schema == "prod"
    assert by_param.url.query["options"] == "-csearch_path=prod"
    by_options = parse_state_url("postgresql://alice@db/campaigns?options=-csearch_path%3Dstaging", tmp_path)
    assert by_options.schema == "staging"


def test_an_unreachable_postgres_is_a_one_line_connection_error(tmp_path: Path) -> None:
    with pytest.raises(StateConnectionError) as caught:
        StateStore.open("postgresql://postgres@127.0.0.1:1/campaigns", tmp_path)
    message = str(caught.value)
    assert message.startswith("cannot connect to PostgreSQL at 127.0.0.1:1")
    assert "\n" not in message
    assert isinstance(caught.value, CampaignsError)


@pytest.mark.postgres
def test_a_missing_postgres_database_is_named(pg_admin_url: str, tmp_path: Path) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(pg_admin_url).set(database="campaigns_no_such_db").render_as_string(hide_password=False)
    with pytest.raises(StateConnectionError, match='database "campaigns_no_such_db" does not exist'):
        StateStore.open(url, tmp_path)


@pytest.mark.postgres
def test_postgres_schema_is_created_and_holds_the_tables(pg_database_url: str, tmp_path: Path) -> None:
    schema = f"s_{uuid.uuid4().hex[:10]}"
    with StateStore.open(f"{pg_database_url}?schema={schema}", tmp_path) as store:
        store.meta()
    engine = create_engine(pg_database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            tables = conn.execute(
                text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"), {"s": schema}
            ).scalars().all()
    finally:
        engine.dispose()
    assert "campaigns_meta" in tables and "campaigns_resources" in tables
