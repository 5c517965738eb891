"""Reliability of ``campaigns apply`` as real processes, on both backends: two applies racing,
and an apply SIGKILLed in the middle of its transaction (via the test-only hook
CAMPAIGNS_TEST_APPLY_SLEEP, which sleeps inside the transaction after every write)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

import pytest
from repos import SmallRepo, record_pass

from engine.state import StateStore

pytestmark = pytest.mark.slow


def start_apply(repo, url, *extra: str, sleep: float | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("GITHUB_EVENT_PATH", None)
    env.pop("CAMPAIGNS_STATE", None)
    if sleep is not None:
        env["CAMPAIGNS_TEST_APPLY_SLEEP"] = str(sleep)
    return subprocess.Popen(
        [sys.executable, "-m", "engine", "apply", "--repo", str(repo.root), "--state", url,
         "--approved-by", "alice", "--reason", "race", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if ready:
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            if needle in line:
                return line
    proc.kill()
    raise AssertionError(f"{needle!r} never came: {''.join(seen)}")


def state(repo, url):
    with StateStore.open(url, repo.root) as store:
        return store.meta().serial, store.resource_digests(), store.history(), store.lock_holder()


@pytest.fixture
def repo(tmp_path, state_url) -> SmallRepo:
    repo = SmallRepo(tmp_path / "repo")
    record_pass(repo.root, state_url)
    return repo


def test_two_applies_race_one_wins_the_other_names_the_holder(repo, state_url):
    first = start_apply(repo, state_url, sleep=5)  # whoever locks first holds it long enough for the other to try
    second = start_apply(repo, state_url, sleep=5)
    outcomes = {}
    for proc in (first, second):
        out, err = proc.communicate(timeout=120)
        outcomes[proc.pid] = (proc.returncode, out, err)
    winners = [pid for pid, (code, _, _) in outcomes.items() if code == 0]
    losers = [pid for pid, (code, _, _) in outcomes.items() if code != 0]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    code, out, err = outcomes[winners[0]]
    assert "Apply complete! 7 created" in out
    code, out, err = outcomes[losers[0]]
    assert code == 1
    assert "state is locked by " in err and f"pid {winners[0]} (apply)" in err
    assert "campaigns state unlock" in err
    assert "Traceback" not in err
    serial, digests, history, holder = state(repo, state_url)
    assert serial == 1 and len(history) == 1 and len(digests) == 7
    assert holder is None


def test_a_waiting_apply_finds_nothing_left_to_do(repo, state_url):
    first = start_apply(repo, state_url, "--lock-timeout", "60", sleep=2)
    second = start_apply(repo, state_url, "--lock-timeout", "60", sleep=2)
    results = [proc.communicate(timeout=180) + (proc.returncode,) for proc in (first, second)]
    assert [code for _, _, code in results] == [0, 0], results
    outs = [out for out, _, _ in results]
    assert sum("Apply complete!" in out for out in outs) == 1
    assert sum("No changes" in out for out in outs) == 1
    serial, _, history, _ = state(repo, state_url)
    assert serial == 1 and len(history) == 1


def test_apply_killed_mid_transaction_leaves_the_old_state(repo, state_url, state_backend):
    victim = start_apply(repo, state_url, sleep=120)
    wait_for_line(victim, "test hook: sleeping")
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    for stream in (victim.stdout, victim.stderr):
        stream.close()

    serial, digests, history, holder = state(repo, state_url)
    assert serial == 0 and digests == {} and history == []  # nothing of the killed apply is visible
    deadline = time.monotonic() + 20
    while holder is not None and holder.held and time.monotonic() < deadline:  # PostgreSQL: the session ends
        time.sleep(0.2)
        holder = state(repo, state_url)[3]
    assert holder is None or not holder.held, f"the dead apply still holds the lock ({state_backend})"

    after = start_apply(repo, state_url)
    out, err = after.communicate(timeout=120)
    assert after.returncode == 0, err
    assert "Apply complete! 7 created, 0 updated, 0 deleted; serial 1." in out
    serial, digests, history, holder = state(repo, state_url)
    assert serial == 1 and len(digests) == 7 and len(history) == 1 and holder is None
