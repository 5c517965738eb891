"""Task dates lie in the years 2000-2199 and a schedule spans at most ten years (``date-range``),
so ``plan``, ``schedule`` and its calendar never overflow or walk millennia."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from bounded_run import campaigns_bounded
from cli_runner import campaigns
from repos import example_repo, write

TASK = "campaigns/december-flash-sale/flash-sale-push.yaml"
START_LINE, FINISH_LINE = 7, 8


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return example_repo(tmp_path / "repo")


def set_dates(repo: Path, start: str, finish: str, recurrence: str | None = None) -> None:
    text = (repo / TASK).read_text()
    text = text.replace("start_date: 2026-12-01", f"start_date: {start}").replace("finish_date: 2026-12-31", f"finish_date: {finish}")
    if recurrence:
        text = text.replace("recurrence: {type: daily, every: 2}", f"recurrence: {recurrence}")
    write(repo, TASK, text)


def date_problems(repo: Path) -> list[tuple[int, str]]:
    run = campaigns("validate", "--repo", str(repo), "--format", "json", "--no-cache")
    assert "Internal error" not in run.err
    return [(p["line"], p["message"]) for p in json.loads(run.out)["problems"] if p["code"] == "date-range"]


@pytest.mark.parametrize("year", ["0001", "1999", "2200", "9999"])
def test_a_date_outside_2000_to_2199_is_a_date_range_problem(repo, year):
    set_dates(repo, f"{year}-12-01", f"{year}-12-31")
    found = date_problems(repo)
    assert [line for line, _ in found] == [START_LINE, FINISH_LINE]
    assert all("outside the years 2000-2199" in message for _, message in found)


@pytest.mark.parametrize("start, finish", [("2000-01-01", "2000-01-31"), ("2199-12-01", "2199-12-31")])
def test_the_first_and_last_allowed_years_validate(repo, start, finish):
    set_dates(repo, start, finish)
    assert date_problems(repo) == []


@pytest.mark.parametrize("year", ["0001", "9999"])
@pytest.mark.parametrize("command", [("plan",), ("schedule", "flash-sale-push"), ("schedule", "flash-sale-push", "--format", "ics")])
def test_plan_and_schedule_refuse_such_dates_instead_of_overflowing(repo, tmp_path, year, command):
    set_dates(repo, f"{year}-12-01", f"{year}-12-31")
    run = campaigns(*command, "--repo", str(repo), "--state", f"sqlite:///{tmp_path / 'state.db'}") if command[0] == "plan" else campaigns(
        *command, "--repo", str(repo)
    )
    assert "Internal error" not in run.out + run.err and "OverflowError" not in run.out + run.err
    assert run.code == 1 and "date-range" in run.out + run.err


def test_a_schedule_of_exactly_ten_years_validates_and_a_day_more_does_not(repo):
    set_dates(repo, "2026-12-01", "2036-11-30")
    assert date_problems(repo) == []
    write(repo, TASK, (repo / TASK).read_text().replace("2036-11-30", "2036-12-01"))
    [(line, message)] = date_problems(repo)
    assert line == FINISH_LINE
    assert "more than 10 years" in message and "finish by 2036-11-30" in message


def test_ten_years_from_a_29_february(repo):
    set_dates(repo, "2028-02-29", "2038-02-27")
    assert date_problems(repo) == []
    write(repo, TASK, (repo / TASK).read_text().replace("2038-02-27", "2038-02-28"))
    assert [line for line, _ in date_problems(repo)] == [FINISH_LINE]


def test_a_finish_before_the_start_is_still_reported(repo):
    set_dates(repo, "2026-12-31", "2026-12-01")
    [(line, message)] = date_problems(repo)
    assert line == FINISH_LINE and "before start_date" in message


def test_a_one_time_task_to_the_year_9999_is_refused_quickly(repo, tmp_path):
    """38 s and 500 MB per plan before, and as much for every executor pass."""
    set_dates(repo, "2026-12-01", "9999-12-31", "{type: one_time}")
    run = campaigns_bounded("plan", "--repo", str(repo), "--state", f"sqlite:///{tmp_path / 'state.db'}", seconds=60, memory=700 << 20)
    assert not run.crashed and run.code == 1, run.err[-2000:]
    assert "date-range" in run.out + run.err


def test_a_one_time_task_over_ten_years_plans_and_prints_its_whole_calendar(repo, tmp_path):
    set_dates(repo, "2026-12-01", "2036-11-30", "{type: one_time}")
    run = campaigns_bounded("plan", "--repo", str(repo), "--state", f"sqlite:///{tmp_path / 'state.db'}", seconds=120, memory=700 << 20)
    assert not run.crashed and run.code == 0, run.err[-2000:]
    run = campaigns("schedule", "flash-sale-push", "--repo", str(repo), "--format", "json")
    [once] = json.loads(run.out)["occurrences"]
    first, last = dt.date(2026, 12, 1), dt.date(2036, 11, 30)
    days = sum(1 for n in range((last - first).days + 1) if (first + dt.timedelta(n)).weekday() != 0)  # no Mondays
    assert once["key"] == "once" and len(once["windows"]) == 2 * days
    assert once["windows"][0]["start"] == "2026-12-01T09:00:00+08:00"
    assert once["windows"][-1]["finish"] == "2036-11-30T21:00:00+08:00"
