"""Time comes from one injectable clock: ``apply`` dates what it records with it, ``report`` and
``status`` answer as at ``--now``, whatever the machine's clock says."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import time_machine
from cli_runner import campaigns
from repos import SmallRepo, apply_now, record_pass

from engine.clock import Clock
from engine.state import StateStore

UTC = dt.timezone.utc
APPLIED = dt.datetime(2026, 12, 15, 3, 0, tzinfo=UTC)  # flash-push runs every 2 days from 2027-01-04


@pytest.fixture
def repo(tmp_path) -> SmallRepo:
    return SmallRepo(tmp_path / "repo")


def run(repo: SmallRepo, url: str, *args: str):
    return campaigns(*args, "--repo", str(repo.root), "--state", url)


@pytest.fixture
def applied(repo: SmallRepo, state_url: str) -> SmallRepo:
    record_pass(repo.root, state_url, "flash-push")
    with time_machine.travel(APPLIED, tick=False):  # the machine's clock, as apply reads it
        result = run(repo, state_url, "apply", "--approved-by", "alice", "--reason", "go")
    assert result.code == 0, result.err
    return repo


def test_apply_records_its_times_from_the_clock(applied: SmallRepo, state_url: str) -> None:
    shown = json.loads(run(applied, state_url, "state", "show", "task.flash-push", "--format", "json").out)
    assert shown["status"] == {"status": "running", "since": "2026-12-15T03:00:00Z", "content_digest": shown["status"]["content_digest"]}
    [entry] = json.loads(run(applied, state_url, "state", "history", "--format", "json").out)
    assert entry["applied_at"] == "2026-12-15T03:00:00Z"


def test_apply_takes_an_injected_clock(repo: SmallRepo, state_url: str) -> None:
    record_pass(repo.root, state_url, "flash-push")
    moment = dt.datetime(2031, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert apply_now(repo.root, state_url, clock=Clock.fixed(moment)).applied
    with StateStore.open(state_url, repo.root) as store:
        assert store.task_states()["flash-push"].since.replace(tzinfo=UTC) == moment
        assert store.history()[-1].applied_at.replace(tzinfo=UTC) == moment


def occurrences(repo: SmallRepo, url: str, now: str) -> list[tuple[str, str]]:
    result = run(repo, url, "report", "flash-push", "--format", "json", "--now", now)
    assert result.code == 0, result.err
    return [(o["occurrence"], o["state"]) for o in json.loads(result.out)["occurrences"]]


def test_report_answers_as_at_now(applied: SmallRepo, state_url: str) -> None:
    assert occurrences(applied, state_url, "2027-01-03T23:00:00+08:00") == []
    assert occurrences(applied, state_url, "2027-01-04T09:30:00+08:00") == [("2027-01-04", "not started")]
    assert occurrences(applied, state_url, "2027-01-06T22:00:00+08:00") == [
        ("2027-01-04", "not started"), ("2027-01-06", "not started"),
    ]
    table = run(applied, state_url, "report", "flash-push", "--now", "2027-01-04T09:30:00Z")
    assert table.code == 0 and "2027-01-04  not started" in table.out
    bad = run(applied, state_url, "report", "flash-push", "--now", "2027-01-04 09:30")
    assert bad.code == 1 and "--now '2027-01-04 09:30' needs a UTC offset" in bad.err


def test_status_answers_as_at_now(applied: SmallRepo, state_url: str) -> None:
    before = run(applied, state_url, "status", "--format", "json", "--now", "2026-12-20T00:00:00Z")
    assert before.code == 0, before.err
    [row] = json.loads(before.out)["tasks"]
    assert row["next_occurrence"]["key"] == "2027-01-04" and row["since"] == "2026-12-15T03:00:00Z"
    later = run(applied, state_url, "status", "--format", "json", "--now", "2027-01-05T12:00:00+08:00")
    [row] = json.loads(later.out)["tasks"]
    assert row["next_occurrence"]["key"] == "2027-01-06"
    # nothing delivered the 4th: by the 5th the executor is behind, and status says so
    assert later.code == 1 and "behind: task flash-push occurrence 2027-01-04: never started" in later.err
    text = run(applied, state_url, "status", "--now", "2026-12-20T00:00:00Z")
    assert text.code == 0 and "2027-01-04 09:00" in text.out and "Times are in Asia/Manila" in text.out
