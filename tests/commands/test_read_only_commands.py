"""``plan``, ``status``, ``report`` and ``state list|show|history`` write nothing: against a state
that does not exist yet they answer as from an empty state without creating it (no file, no
folder, no PostgreSQL schema or table); a SQLite URL whose folder does not exist is an error."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from repos import SmallRepo
from repos import campaigns as campaigns_process
from sqlalchemy.engine import make_url

READERS = [
    ("status",),
    ("status", "--format", "json"),
    ("report", "flash-push"),
    ("state", "list"),
    ("state", "list", "--format", "json"),
    ("state", "show", "task.flash-push"),
    ("state", "history"),
]


@pytest.fixture
def repo(tmp_path: Path) -> SmallRepo:
    return SmallRepo(tmp_path / "repo")


def run(repo: SmallRepo, url: str, *args: str, env: dict | None = None):
    return campaigns_process(*args, "--repo", str(repo.root), "--state", url, env=env)


def tree(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


@pytest.mark.parametrize("fork", [True, False], ids=["forked-reader", "no-fork"])
def test_plan_against_a_missing_sqlite_state_plans_from_empty_and_creates_nothing(
    repo: SmallRepo, tmp_path: Path, fork: bool
) -> None:
    folder = tmp_path / "states"
    folder.mkdir()
    url = f"sqlite:///{folder}/state.db"
    env = None if fork else {"CAMPAIGNS_NO_FORK": "1"}
    text = run(repo, url, "plan", env=env)
    assert text.returncode == 0, text.stderr
    assert "does not exist yet: apply creates it" in text.stdout
    assert "Plan: 7 to create, 0 to update, 0 to delete." in text.stdout
    document = json.loads(run(repo, url, "plan", "--format", "json", env=env).stdout)
    assert document["lineage"] is None and document["serial"] == 0
    assert document["summary"]["create"] == 7
    markdown = run(repo, url, "plan", "--format", "markdown", env=env).stdout
    assert "a new state" in markdown
    assert tree(folder) == []  # no state file, no -wal/-shm, no lock file


@pytest.mark.parametrize("args", READERS, ids=" ".join)
def test_readers_of_a_missing_sqlite_state_create_nothing(repo: SmallRepo, tmp_path: Path, args: tuple) -> None:
    folder = tmp_path / "states"
    folder.mkdir()
    result = run(repo, f"sqlite:///{folder}/state.db", *args)
    assert tree(folder) == []
    if args[0] in ("report",) or args[:2] == ("state", "show"):
        assert result.returncode == 1  # nothing of that name in an empty state
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
        return
    assert result.returncode == 0, result.stderr
    if "json" in args:
        document = json.loads(result.stdout)
        assert document["lineage"] is None and document["serial"] == 0
    elif args != ("state", "history"):
        assert "No state at" in result.stdout and "yet" in result.stdout


@pytest.mark.parametrize("args", [("plan",), *READERS], ids=" ".join)
def test_a_state_url_whose_folder_does_not_exist_is_a_one_line_error(
    repo: SmallRepo, tmp_path: Path, args: tuple
) -> None:
    missing = tmp_path / "nonexistent" / "dir"
    result = run(repo, f"sqlite:///{missing}/x.db", *args)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and f"the folder {missing} does not exist" in lines[0]
    assert not (tmp_path / "nonexistent").exists()


def test_a_plan_saved_before_the_state_existed_applies_to_the_new_state(repo: SmallRepo, tmp_path: Path) -> None:
    repo.task("flash-push", status="paused")  # nothing needs a pilot test: the apply only needs approval
    folder = tmp_path / "states"
    folder.mkdir()
    url = f"sqlite:///{folder}/state.db"
    saved = tmp_path / "plan.json"
    assert run(repo, url, "plan", "--out", str(saved)).returncode == 0
    assert not (folder / "state.db").exists()
    applied = run(repo, url, "apply", str(saved), "--approved-by", "alice", "--reason", "first apply")
    assert applied.returncode == 0, applied.stderr
    assert "Apply complete! 7 created" in applied.stdout
    listed = json.loads(run(repo, url, "state", "list", "--format", "json").stdout)
    assert listed["serial"] == 1 and len(listed["resources"]) == 7
    # a plan from empty is stale once the state has been applied to
    assert run(repo, url, "plan", "--out", str(saved)).returncode == 0
    stale = run(repo, f"sqlite:///{tmp_path}/other.db", "plan", "--out", str(tmp_path / "empty.json"))
    assert stale.returncode == 0
    refused = run(repo, url, "apply", str(tmp_path / "empty.json"), "--approved-by", "alice", "--reason", "again")
    assert refused.returncode == 1 and "made before the state existed" in refused.stderr


# -- PostgreSQL: a schema (or database) without our tables stays untouched ----------------------------


def _schemas_and_tables(database_url: str) -> tuple[set[str], set[tuple[str, str]]]:
    import psycopg

    conninfo = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(conninfo) as conn:
        schemas = {row[0] for row in conn.execute("SELECT nspname FROM pg_namespace")}
        tables = {
            (row[0], row[1])
            for row in conn.execute(
                "SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
            )
        }
    return schemas, tables


@pytest.fixture
def fresh_database(pg_admin_url: str):
    """A database of its own (its public schema holds nothing of ours), dropped after the test."""
    import psycopg

    name = f"campaigns_ro_{uuid.uuid4().hex[:10]}"
    admin = pg_admin_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.postgres
@pytest.mark.parametrize("where", ["missing-schema", "empty-schema", "public-schema"])
def test_postgresql_readers_leave_a_state_that_does_not_exist_untouched(
    repo: SmallRepo, fresh_database: str, where: str
) -> None:
    import psycopg

    schema = f"s_{uuid.uuid4().hex[:10]}"
    if where == "empty-schema":
        with psycopg.connect(fresh_database, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    url = fresh_database if where == "public-schema" else f"{fresh_database}?options=-csearch_path%3D{schema}"
    before = _schemas_and_tables(fresh_database)
    for args in [("plan",), ("plan", "--format", "json"), *READERS]:
        env = {"CAMPAIGNS_NO_FORK": "1"} if args == ("plan", "--format", "json") else None
        result = run(repo, url, *args, env=env)
        assert "Traceback" not in result.stderr
        expected = 1 if args[0] == "report" or args[:2] == ("state", "show") else 0
        assert result.returncode == expected, (args, result.stderr)
        if args == ("plan", "--format", "json"):
            assert json.loads(result.stdout)["lineage"] is None
        assert _schemas_and_tables(fresh_database) == before, args
