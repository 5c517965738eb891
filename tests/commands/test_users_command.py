"""``campaigns users import`` / ``users info`` through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import campaigns, campaigns_process
from repos import example_repo

from engine.delivery.directory import known_attributes, lookup_users
from engine.state import StateStore


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return example_repo(tmp_path / "repo")


def test_import_the_example_directory_and_describe_it(repo: Path, state_url: str) -> None:
    run = campaigns("users", "import", str(repo / "audiences/users.csv"), "--repo", str(repo), "--state", state_url)
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert len(lines) == 1  # not a TTY: one summary line, no progress bar
    assert lines[0].startswith("Imported 202 users (4 attributes: city, first_name, points, segment) in ")
    with StateStore.open(state_url, repo) as store:
        assert known_attributes(store) == {"city", "first_name", "points", "segment"}
        assert lookup_users(store, ["u-tester-1"])["u-tester-1"]["points"] == 1500

    info = campaigns("users", "info", "--repo", str(repo), "--state", state_url, "--format", "json")
    assert info.code == 0, info.err
    data = json.loads(info.out)
    assert data["imported"]["users"] == 202 and data["imported"]["last_source"] == "users.csv"
    text = campaigns("users", "info", "--repo", str(repo), "--state", state_url)
    assert "202 users in" in text.out and "Attributes: city, first_name, points, segment" in text.out


def test_merge_then_replace(repo: Path, state_url: str, tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("user_id,city\nu1,Manila\nu2,Cebu\n")
    (tmp_path / "b.csv").write_text("user_id,city\nu2,Davao\nu3,Makati\n")
    common = ("--repo", str(repo), "--state", state_url)
    assert campaigns("users", "import", str(tmp_path / "a.csv"), *common).code == 0
    merged = campaigns("users", "import", str(tmp_path / "b.csv"), *common)
    assert "1 new, 1 updated, 3 in the directory" in merged.out
    replaced = campaigns("users", "import", str(tmp_path / "b.csv"), "--replace", *common)
    assert replaced.code == 0 and "replaced the directory of 3 users" in replaced.out
    with StateStore.open(state_url, repo) as store:
        assert sorted(lookup_users(store, ["u1", "u2", "u3"])) == ["u2", "u3"]


def test_a_bad_file_exits_1_listing_lines_and_imports_nothing(repo: Path, state_url: str, tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("user_id,opt_out\nu1,push\nu1,\nu2,email\n")
    run = campaigns("users", "import", str(tmp_path / "bad.csv"), "--repo", str(repo), "--state", state_url)
    assert run.code == 1
    assert run.out == ""
    assert "Error: " in run.err and "has 2 bad rows; nothing was imported" in run.err
    assert "line 3: duplicate user_id 'u1' (first on line 2)" in run.err
    assert "line 4: opt_out names unknown channel 'email'" in run.err
    assert "Traceback" not in run.err
    with StateStore.open(state_url, repo) as store:
        assert known_attributes(store) is None


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"id,city\n", "has no user_id column"), (b"user_id,city\nu1,\xff\n", "is not UTF-8 text (line 2: byte 0xff)")],
)
def test_an_unreadable_file_is_one_line(repo: Path, tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "x.csv").write_bytes(content)
    run = campaigns("users", "import", str(tmp_path / "x.csv"), "--repo", str(repo))
    assert run.code == 1
    assert run.err.count("\n") == 1 and message in run.err


def test_a_missing_file(repo: Path) -> None:
    run = campaigns("users", "import", "nope.csv", "--repo", str(repo))
    assert run.code == 1 and "no such file: nope.csv" in run.err


def test_the_state_defaults_to_the_repository_and_follows_the_environment(repo: Path, tmp_path: Path) -> None:
    csv_path = repo / "audiences/vip-ph.csv"
    assert campaigns("users", "import", str(csv_path), "--repo", str(repo)).code == 0
    default = repo / ".campaigns/state.db"  # platform.yaml: sqlite:///.campaigns/state.db, relative to the repo
    assert default.exists()

    elsewhere = f"sqlite:///{tmp_path / 'env' / 'state.db'}"
    run = campaigns("users", "import", str(csv_path), "--repo", str(repo), env={"CAMPAIGNS_STATE": elsewhere})
    assert run.code == 0, run.err
    with StateStore.open(elsewhere, tmp_path) as store:
        assert known_attributes(store) == {"first_name", "tier"}


def test_platform_user_directory_puts_the_directory_in_another_database(repo: Path, state_url: str) -> None:
    platform = repo / "platform.yaml"
    platform.write_text(platform.read_text() + "user_directory: sqlite:///.campaigns/directory.db\n")
    run = campaigns("users", "import", str(repo / "audiences/users.csv"), "--repo", str(repo), "--state", state_url)
    assert run.code == 0, run.err
    with StateStore.open(f"sqlite:///{repo / '.campaigns/directory.db'}", repo) as directory:
        assert len(lookup_users(directory, ["u0001", "u0002"])) == 2
    with StateStore.open(state_url, repo) as state:
        assert known_attributes(state) is None


def test_users_import_as_a_process(repo: Path, tmp_path: Path) -> None:
    run = campaigns_process("users", "import", "audiences/users.csv", cwd=repo)
    assert run.code == 0, run.err
    assert run.out.startswith("Imported 202 users")
    info = campaigns_process("users", "info", cwd=repo)
    assert "202 users" in info.out
