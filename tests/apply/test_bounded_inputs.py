"""Event files and saved plans are read bounded (issue 10 item 7): a 100,000-deep JSON file or an
oversized one is refused at once with one line, through the real ``campaigns apply``, on SQLite
and PostgreSQL. Before, the deep file raised RecursionError (an internal error) and the big
one was read whole into memory."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cli_runner import campaigns
from repos import MERGED, SmallRepo, record_pass

from engine.apply.approval import EVENT_MAX_BYTES
from engine.plan.planfile import PLAN_MAX_BYTES
from engine.state import StateStore

DEEP = 100_000
REFUSED_WITHIN = 2.0  # seconds; the refusal takes milliseconds, this only catches a hang or a full parse


@pytest.fixture
def repo(tmp_path: Path) -> SmallRepo:
    return SmallRepo(tmp_path / "repo", forbid_self_merge=True)


def deep_json(path: Path, depth: int = DEEP) -> Path:
    path.write_text("[" * depth + "]" * depth)
    return path


def sparse_file(path: Path, size: int) -> Path:
    """A file of ``size`` bytes that takes no disk space (a hostile reader would still read it all)."""
    with open(path, "wb") as handle:
        handle.truncate(size)
    return path


def refused_at_once(repo: SmallRepo, url: str, *args: str) -> str:
    started = time.monotonic()
    result = campaigns("apply", *args, "--repo", str(repo.root), "--state", url)
    elapsed = time.monotonic() - started
    assert result.code == 1, result.out + result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.err
    assert "Traceback" not in result.err and "Internal error" not in result.err
    assert elapsed < REFUSED_WITHIN, f"refused after {elapsed:.2f} s"
    with StateStore.open(url, repo.root) as store:
        assert store.meta().serial == 0 and store.history() == []
    return lines[0]


def test_a_100000_deep_event_file_is_refused_at_once(repo, state_url, tmp_path):
    record_pass(repo.root, state_url)
    line = refused_at_once(repo, state_url, "--event", str(deep_json(tmp_path / "deep-event.json")))
    assert line == f"Error: the GitHub event file {tmp_path / 'deep-event.json'} nests 100,000 levels deep; at most 100 are accepted"


def test_an_oversized_event_file_is_refused_without_being_read(repo, state_url, tmp_path):
    record_pass(repo.root, state_url)
    big = sparse_file(tmp_path / "big-event.json", EVENT_MAX_BYTES + 1)
    line = refused_at_once(repo, state_url, "--event", str(big))
    assert line == f"Error: the GitHub event file {big} is 8,388,609 bytes; at most 8 MiB is accepted"
    endless = refused_at_once(repo, state_url, "--event", "/dev/zero")  # not a regular file: read up to the cap only
    assert endless == "Error: the GitHub event file /dev/zero is over 8 MiB, the most that is accepted"


def test_a_large_but_ordinary_event_file_is_still_an_approval(repo, state_url, tmp_path):
    record_pass(repo.root, state_url)
    event = json.loads(MERGED.read_text())
    event["pull_request"]["body"] = "Reason to run: " + "x" * 2_000_000  # a few MB is normal
    path = tmp_path / "large-event.json"
    path.write_text(json.dumps(event))
    result = campaigns("apply", "--event", str(path), "--repo", str(repo.root), "--state", state_url)
    assert result.code == 0, result.err
    assert "Approved by pull request #2" in result.out


def test_a_100000_deep_saved_plan_is_refused_at_once(repo, state_url, tmp_path):
    plan = deep_json(tmp_path / "deep-plan.json")
    line = refused_at_once(repo, state_url, str(plan), "--approved-by", "alice", "--reason", "go")
    assert line == f"Error: plan file {plan} nests 100,000 levels deep; at most 100 are accepted; it cannot be applied"


def test_an_oversized_saved_plan_is_refused_without_being_read(repo, state_url, tmp_path):
    plan = sparse_file(tmp_path / "big-plan.json", PLAN_MAX_BYTES + 1)
    line = refused_at_once(repo, state_url, str(plan), "--approved-by", "alice", "--reason", "go")
    assert line == f"Error: plan file {plan} is 134,217,729 bytes; at most 128 MiB is accepted; it cannot be applied"


def test_a_saved_plan_with_an_overlong_number_is_refused_with_one_line(repo, state_url, tmp_path):
    plan = tmp_path / "number-plan.json"
    plan.write_text('{"kind": "campaigns-plan", "serial": ' + "9" * 5000 + "}")
    line = refused_at_once(repo, state_url, str(plan), "--approved-by", "alice", "--reason", "go")
    assert line.startswith(f"Error: plan file {plan} is not valid JSON: Exceeds the limit (4300 digits)")
