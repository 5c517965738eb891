"""Audience CSVs are checked like ``users import`` checks its file, through the real commands."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_runner import campaigns
from repos import example_repo

from engine.delivery.directory import lookup_users
from engine.state import StateStore


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return example_repo(tmp_path / "repo")


def test_audience_csv_bad_rows_are_csv_invalid_at_their_line(repo: Path) -> None:
    (repo / "audiences/vip-ph.csv").write_bytes(
        b"user_id,tier\nu1,gold\nu1,silver\n,x\n" + b"x" * 33 + b",y\nu\x002,z\nu3\n"
    )
    run = campaigns("validate", "--no-cache", "--repo", str(repo))
    assert run.code == 1
    for line in ("3", "4", "5", "6", "7"):
        assert f"audiences/vip-ph.csv:{line}:1: csv-invalid:" in run.out
    assert "duplicate user_id 'u1' (first on line 2)" in run.out
    assert "holds a NUL character" in run.out and "Traceback" not in run.out + run.err


def test_audience_csv_cut_inside_a_quoted_cell_is_refused(repo: Path) -> None:
    (repo / "audiences/vip-ph.csv").write_text('user_id,tier\nu1,gold\nu2,"gol')
    run = campaigns("validate", "--no-cache", "--repo", str(repo))
    assert run.code == 1
    assert "audiences/vip-ph.csv:3:1: csv-invalid: the file ends inside a quoted cell" in run.out


def test_users_import_refuses_a_file_cut_inside_a_quoted_cell(repo: Path, state_url: str, tmp_path: Path) -> None:
    cut = tmp_path / "cut.csv"
    cut.write_text('user_id,city\nu1,Manila\nu2,"Quezon')
    run = campaigns("users", "import", str(cut), "--repo", str(repo), "--state", state_url)
    assert run.code == 1 and "line 3: the file ends inside a quoted cell" in run.err
    with StateStore.open(state_url, repo) as store:
        assert lookup_users(store, ["u1", "u2"]) == {}


def test_users_import_refuses_a_nul_in_a_user_id(repo: Path, state_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "nul.csv"
    bad.write_bytes(b"user_id,city\nu1,Manila\nu\x002,Cebu\n")
    run = campaigns("users", "import", str(bad), "--repo", str(repo), "--state", state_url)
    assert run.code == 1 and "line 3: user_id 'u\\x002' holds a NUL character" in run.err
    assert "Traceback" not in run.err


def test_replace_that_would_remove_more_than_half_is_refused_unless_allow_shrink(
    repo: Path, state_url: str, tmp_path: Path
) -> None:
    common = ("--repo", str(repo), "--state", state_url)
    assert campaigns("users", "import", str(repo / "audiences/users.csv"), *common).code == 0
    header_only = tmp_path / "empty-export.csv"
    header_only.write_text("user_id,city\n")
    refused = campaigns("users", "import", str(header_only), "--replace", *common)
    assert refused.code == 1
    assert "would remove 202 of the 202 users" in refused.err and "--allow-shrink" in refused.err
    with StateStore.open(state_url, repo) as store:
        assert "u-tester-1" in lookup_users(store, ["u-tester-1"])  # nothing changed
    allowed = campaigns("users", "import", str(header_only), "--replace", "--allow-shrink", *common)
    assert allowed.code == 0, allowed.err
    with StateStore.open(state_url, repo) as store:
        assert lookup_users(store, ["u-tester-1"]) == {}
