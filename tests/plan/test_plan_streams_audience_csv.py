"""``plan`` streams an audience CSV (issue 10 item 7): its digest is taken in chunks and its rows,
when plan sizes the audience, are read from the file and checked against that digest -- plan
never holds the CSV in memory (it read it whole twice before: 195 MB of RSS for a 45 MB CSV).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from repos import example_repo

from engine.config.usercsv import CsvFile, CsvFileError, UsersCsv, file_sha256
from engine.plan.desired import csv_sha256


def peak_rss_mb(args: list[str], cwd: Path) -> tuple[int, float, str]:
    """Exit code and peak RSS (MB) of ``python -m engine ARGS`` (its own rusage, via wait4)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "engine", *args],
        cwd=cwd,
        env={**os.environ, "CAMPAIGNS_WORKERS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    err = process.stderr.read().decode(errors="replace") if process.stderr else ""
    _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_maxrss / 1024, err


def write_csv(path: Path, rows: int) -> int:
    with path.open("w") as handle:
        handle.write("user_id,first_name,tier\n")
        for index in range(rows):
            handle.write(f"u{index:09d},Juan{index % 97},platinum\n")
    return path.stat().st_size


@pytest.mark.slow
def test_plan_does_not_hold_a_big_audience_csv_in_memory(tmp_path):
    small = example_repo(tmp_path / "small")
    big = example_repo(tmp_path / "big")
    size = write_csv(big / "audiences/vip-ph.csv", 700_000)  # about 19 MB
    plan = ["plan", "--state", "sqlite:///state.db", "--no-color"]
    code, floor, err = peak_rss_mb(plan, small)
    assert code == 0, err
    code, peak, err = peak_rss_mb(plan, big)
    assert code == 0, err
    # plan counts the listed members even without a directory; what stays in memory is the set
    # of ids seen (a duplicate is refused): about 4x the CSV's bytes here, the parsed rows took 10x
    assert peak - floor < 6 * size / 2**20, f"plan took {peak - floor:.0f} MB over its floor for a {size / 2**20:.0f} MB CSV"


def test_the_streamed_digest_is_the_sha256_of_the_bytes(tmp_path):
    repo = example_repo(tmp_path / "repo")
    raw = (repo / "audiences/vip-ph.csv").read_bytes()
    assert csv_sha256(repo, "audiences/vip-ph.csv") == hashlib.sha256(raw).hexdigest()
    assert file_sha256(repo / "audiences/vip-ph.csv") == hashlib.sha256(raw).hexdigest()


def test_rows_read_from_a_csv_that_changed_since_it_was_planned_are_refused(tmp_path):
    csv = tmp_path / "list.csv"
    csv.write_text("user_id\nu1\nu2\n")
    planned = CsvFile(str(csv), file_sha256(csv))
    reader = UsersCsv.from_file(planned, "list.csv")
    assert [row[0] for row in reader.rows()] == ["u1", "u2"]
    reader.verify()  # same bytes: fine
    csv.write_text("user_id\nu1\nu3\n")
    changed = UsersCsv.from_file(planned, "list.csv")
    list(changed.rows())
    with pytest.raises(CsvFileError, match="changed since it was planned"):
        changed.verify()


def test_a_csv_swapped_for_a_fifo_is_refused_not_waited_for(tmp_path):
    repo = example_repo(tmp_path / "repo")
    csv = repo / "audiences/vip-ph.csv"
    csv.unlink()
    os.mkfifo(csv)
    with pytest.raises(Exception, match="FIFO"):
        csv_sha256(repo, "audiences/vip-ph.csv")


@pytest.mark.slow
def test_plan_sizing_a_big_audience_csv_against_a_directory_streams_its_rows(tmp_path):
    """With a user directory, plan counts the CSV audience's members: the rows go from the file
    into the list table as they are read, never into a list in memory (only their ids, to refuse
    a duplicate)."""
    small = example_repo(tmp_path / "small")
    big = example_repo(tmp_path / "big")
    size = write_csv(big / "audiences/vip-ph.csv", 700_000)
    for repo in (small, big):
        code, _rss, err = peak_rss_mb(["users", "import", "audiences/users.csv", "--state", "sqlite:///state.db"], repo)
        assert code == 0, err
    plan = ["plan", "--state", "sqlite:///state.db", "--no-color", "--forecast-days", "0"]
    code, floor, err = peak_rss_mb(plan, small)
    assert code == 0, err
    code, peak, err = peak_rss_mb(plan, big)
    assert code == 0, err
    # what stays is the set of ids seen (a duplicate is refused before it reaches the table):
    # about 4x the CSV's bytes for these short rows; holding the parsed rows took 10x
    assert peak - floor < 6 * size / 2**20, f"plan took {peak - floor:.0f} MB over its floor for a {size / 2**20:.0f} MB CSV"
