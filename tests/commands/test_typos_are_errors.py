"""No silent success on a typo: an unknown ``run --task`` or ``test --tester`` is an error that
names what was not found, and a task whose dates are all past gets a ``dates-past`` warning."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_runner import campaigns
from repos import SmallRepo, record_pass

from engine.state import StateStore


@pytest.fixture
def repo(tmp_path: Path) -> SmallRepo:
    return SmallRepo(tmp_path / "repo")


def run(repo: SmallRepo, url: str, *args: str):
    return campaigns(*args, "--repo", str(repo.root), "--state", url)


def one_line_error(result) -> str:
    assert result.code == 1, result.out
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.err, result.err
    return lines[0]


@pytest.fixture
def applied(repo: SmallRepo, state_url: str) -> SmallRepo:
    record_pass(repo.root, state_url, "flash-push")
    result = run(repo, state_url, "apply", "--approved-by", "alice", "--reason", "go")
    assert result.code == 0, result.err
    return repo


def test_run_once_with_an_unknown_task_is_an_error(applied: SmallRepo, state_url: str) -> None:
    at = ["--once", "--now", "2027-01-04T09:30:00+08:00", "--log", "quiet"]
    message = one_line_error(run(applied, state_url, "run", *at, "--task", "flash-psh"))
    assert "--task 'flash-psh': no such task in the state" in message and "did you mean 'flash-push'?" in message
    message = one_line_error(run(applied, state_url, "run", *at, "--task", "flash-push", "--task", "nope", "--task", "zzz"))
    assert "'nope', 'zzz': no such tasks in the state" in message
    assert not (applied.root / ".campaigns" / "outbox").exists()  # nothing was delivered meanwhile
    found = run(applied, state_url, "run", *at, "--task", "flash-push")
    assert found.code == 0, found.err
    assert found.out.startswith("task flash-push occurrence "), found.out


def test_pilot_test_with_an_unknown_tester_is_an_error(repo: SmallRepo, state_url: str) -> None:
    message = one_line_error(run(repo, state_url, "test", "flash-push", "--tester", "u-nobody"))
    assert "tester 'u-nobody' not found" in message and "user directory" in message and "site 'ph'" in message
    message = one_line_error(run(repo, state_url, "test", "flash-push", "--tester", "u-tester-1", "--tester", "u-x", "--tester", "u-y"))
    assert "testers 'u-x', 'u-y' not found" in message
    with StateStore.open(state_url, repo.root) as store:
        assert store.pilot_tests("flash-push") == []  # nothing recorded, nothing sent
    assert not (repo.root / ".campaigns" / "outbox").exists()


def test_a_tester_of_the_directory_or_of_the_site_is_accepted(repo: SmallRepo, state_url: str) -> None:
    from engine.delivery.directory import import_users

    users = repo.root / "users.csv"
    users.write_text("user_id,first_name\nu-ana,Ana\n")
    with StateStore.open(state_url, repo.root) as store:
        import_users(store, users)
    result = run(repo, state_url, "test", "flash-push", "--tester", "u-ana", "--tester", "u-tester-1")
    assert result.code == 0, result.err
    assert "sent    u-ana <- flash-a (directory)" in result.out
    assert "sent    u-tester-1 <- flash-a (examples)" in result.out


# -- dates-past --------------------------------------------------------------------------------------


def problems(root: Path, now: str, *extra: str) -> list[dict]:
    result = campaigns("validate", "--format", "json", "--now", now, "--repo", str(root), *extra)
    assert result.code == 0, result.out + result.err
    return [p for p in json.loads(result.out)["problems"] if p["code"] != "unused"]  # audience vips is unused


def test_a_task_whose_dates_are_all_past_gets_a_warning(repo: SmallRepo) -> None:
    # flash-push runs 2027-01-04 .. 2027-03-31 in Asia/Manila
    assert problems(repo.root, "2027-03-31T23:59:00+08:00") == []  # its last day, in the site's zone
    [warning] = problems(repo.root, "2027-03-31T16:00:00Z")  # already April 1st in Manila
    assert (warning["file"], warning["code"], warning["severity"]) == ("campaigns/xmas/flash-push.yaml", "dates-past", "warning")
    assert warning["line"] == 7  # finish_date
    assert "finish_date 2027-03-31 is before today, 2027-04-01" in warning["message"]
    text = campaigns("validate", "--now", "2028-06-15T12:00:00Z", "--repo", str(repo.root))
    assert text.code == 0  # a warning, not an error
    assert "campaigns/xmas/flash-push.yaml:7:" in text.out and "dates-past: warning:" in text.out


def test_the_cached_result_follows_the_date(repo: SmallRepo) -> None:
    late, early = "2027-06-01T00:00:00Z", "2027-01-01T00:00:00Z"
    assert problems(repo.root, early) == []
    assert [p["code"] for p in problems(repo.root, late)] == ["dates-past"]  # the cache did not hide it
    assert problems(repo.root, early) == []  # nor keep it
    assert [p["code"] for p in problems(repo.root, late)] == ["dates-past"]
    shutil.rmtree(repo.root / ".campaigns", ignore_errors=True)
    assert [p["code"] for p in problems(repo.root, late, "--no-cache")] == ["dates-past"]


def test_a_schedule_that_never_delivers_stays_no_occurrences(repo: SmallRepo) -> None:
    repo.write(
        "campaigns/xmas/flash-push.yaml",
        (repo.root / "campaigns/xmas/flash-push.yaml")
        .read_text()
        .replace("recurrence: {type: daily, every: 2}", "recurrence: {type: weekly, days: [monday]}\n  do_not_disturb: [monday]"),
    )
    result = campaigns("validate", "--format", "json", "--now", "2026-12-01T00:00:00Z", "--repo", str(repo.root))
    assert [p["code"] for p in json.loads(result.out)["problems"] if p["code"] != "unused"] == ["no-occurrences"]
    late = campaigns("validate", "--format", "json", "--now", "2028-01-01T00:00:00Z", "--repo", str(repo.root))
    assert [p["code"] for p in json.loads(late.out)["problems"] if p["code"] != "unused"] == ["no-occurrences"]


def test_validate_now_must_be_an_instant(repo: SmallRepo) -> None:
    message = one_line_error(campaigns("validate", "--now", "2027-01-01", "--repo", str(repo.root)))
    assert "--now '2027-01-01' needs a UTC offset" in message
