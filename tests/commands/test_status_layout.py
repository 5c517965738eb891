"""``campaigns status`` fits 80 columns: columns give way by priority (CAMPAIGN, SINCE, LAST
PILOT TEST, CHANNEL), cells wrap, free-text lines wrap; ``--wide`` shows every column; every
time is in the site's zone, and the zone is named."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from cli_runner import campaigns
from hypothesis import given, settings
from hypothesis import strategies as st
from repos import SmallRepo, record_pass

from engine import texttable

APPLIED = dt.datetime(2026, 12, 15, 3, 0, tzinfo=dt.timezone.utc)  # 11:00 in Manila
AT = "2026-12-20T00:00:00Z"
LONG = "black-friday-mega-sale-reminder-for-platinum-members"


@pytest.fixture
def applied(tmp_path) -> tuple[SmallRepo, str]:
    repo = SmallRepo(tmp_path / "repo")
    repo.write("campaigns/black-friday-and-cyber-monday-2026/campaign.yaml", "name: Black Friday\ndescription: Deals\n")
    repo.task(LONG, campaign="black-friday-and-cyber-monday-2026")
    url = f"sqlite:///{tmp_path}/state.db"
    record_pass(repo.root, url, "flash-push", LONG)
    with time_machine.travel(APPLIED, tick=False):
        result = campaigns("apply", "--approved-by", "alice", "--reason", "go", "--repo", str(repo.root), "--state", url)
    assert result.code == 0, result.err
    return repo, url


def status(applied: tuple[SmallRepo, str], *args: str, columns: str | None = "80"):
    repo, url = applied
    return campaigns("status", "--now", AT, "--repo", str(repo.root), "--state", url, *args,
                     env={"COLUMNS": columns} if columns else None)


def test_status_fits_80_columns_and_keeps_the_key_information(applied) -> None:
    result = status(applied)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    header = lines[0].split("  ")
    assert [name for name in ("TASK", "STATUS", "NEXT OCCURRENCE", "DELIVERIES") if name not in lines[0]] == []
    assert "CAMPAIGN" not in header and "SINCE" not in lines[0]  # the first to give way
    assert "flash-push" in result.out and "running" in result.out and "2027-01-04 09:00" in result.out
    first = next(index for index, line in enumerate(lines) if line.startswith("black-friday"))
    name = lines[first].split("  ")[0] + lines[first + 1].split("  ")[0].strip()
    assert name == LONG  # the long name wraps after a hyphen, whole
    assert "Times are in Asia/Manila (the zone of site ph)." in lines
    assert any(line.startswith("Hidden to fit 80 columns: CAMPAIGN, SINCE") and "--wide" in line for line in lines)


def test_wide_shows_every_column_in_the_site_zone(applied) -> None:
    result = status(applied, "--wide")
    assert result.code == 0, result.err
    header = result.out.splitlines()[0]
    assert [name for name in ("TASK", "CAMPAIGN", "CHANNEL", "STATUS", "SINCE", "LAST PILOT TEST", "NEXT OCCURRENCE",
                              "DELIVERIES") if name not in header] == []
    row = next(line for line in result.out.splitlines() if line.startswith("flash-push"))
    assert "xmas" in row and "2026-12-15 11:00" in row  # since: applied at 03:00 UTC, shown in Manila time
    assert "Hidden" not in result.out
    assert any(len(line) > 80 for line in result.out.splitlines())


def test_an_emergency_pause_line_wraps_at_80_columns(applied) -> None:
    repo, url = applied
    reason = "customer complaints about the wrong discount code in the title, checking with the merchant " * 2
    paused = campaigns("pause", "flash-push", "--reason", reason, "--repo", str(repo.root), "--state", url)
    assert paused.code == 0, paused.err
    result = status(applied)
    lines = result.out.splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    assert any(line.startswith("! task.flash-push paused (emergency)") for line in lines)
    assert "paused" in result.out and "checking with the" in result.out


def test_without_columns_a_pipe_gets_80(applied) -> None:
    result = status(applied, columns=None)
    assert all(len(line) <= 80 for line in result.out.splitlines())


words = st.text(alphabet="abcdefghij,0123456789", min_size=1, max_size=14)
cells = st.lists(words, min_size=1, max_size=6).map(" ".join)


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.lists(cells, min_size=5, max_size=5), min_size=1, max_size=6), width=st.integers(40, 160))
def test_a_fitted_table_never_exceeds_the_width_and_loses_no_word(rows: list[list[str]], width: int) -> None:
    columns = [
        texttable.ColumnSpec("ID", wrap=True),
        texttable.ColumnSpec("A", drop=1, wrap=True),
        texttable.ColumnSpec("B", drop=2),
        texttable.ColumnSpec("C", wrap=True),
        texttable.ColumnSpec("D", wrap=True),
    ]
    fitted = texttable.fit(columns, rows, width)
    lines = fitted.text.splitlines()
    assert all(len(line) <= width for line in lines)  # words of at most 14 characters always fit 40 columns
    kept = [spec.header for spec in columns if spec.header not in fitted.dropped]
    assert set(fitted.dropped) <= {"A", "B"} and kept[0] == "ID" and "C" in kept and "D" in kept
    assert fitted.dropped in ((), ("A",), ("A", "B"))  # in priority order
    if width < 3 * 14 + 2 * texttable.GAP:
        return  # three kept columns of 14-character words may not fit: words are cut
    shown = " ".join(lines[1:]).split()
    for row in rows:  # every word of a kept column is still there (uncut while it can be)
        for spec, cell in zip(columns, row):
            if spec.header in kept:
                assert all(word in shown for word in cell.split())


def test_with_no_width_nothing_is_dropped_or_wrapped() -> None:
    fitted = texttable.fit([texttable.ColumnSpec("A", drop=1), texttable.ColumnSpec("B", wrap=True)], [["x" * 50, "y " * 60]], None)
    assert fitted.dropped == () and len(fitted.text.splitlines()) == 2
