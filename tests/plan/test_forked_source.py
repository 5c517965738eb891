"""The forked state reader (engine.plan.source.ForkedSource): no size of plan hangs it, and every
way it can fail is one clear error, never a hang or a traceback.

Whatever could hang runs in a separate process with a timeout, so a regression fails the test
instead of stalling the suite.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from repos import SmallRepo, apply_now, campaigns, record_pass

from engine.errors import CampaignsError
from engine.plan import source as source_module
from engine.plan.source import ForkedSource, SizeRequest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the forked reader needs os.fork")

HANG_TIMEOUT = 240  # seconds; the 2,000-task plan takes a few seconds, a hang never returns


def _environment() -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if key != "CAMPAIGNS_NO_FORK"}
    environment.pop("CAMPAIGNS_STATE", None)
    return environment


# -- a pull request that changes 2,000 tasks -------------------------------------------------------


@pytest.fixture(scope="module")
def renamed_2000(tmp_path_factory) -> tuple[Path, str]:
    """2,000 paused tasks applied, then all renamed and given another `every` (issue 9's repro)."""
    root = tmp_path_factory.mktemp("plan2000") / "repo"
    url = f"sqlite:///{root.parent}/state/state.db"
    repo = SmallRepo(root)
    repo.delete_task("flash-push")
    for index in range(2000):
        repo.task(f"t-{index:05d}", status="paused")
    apply_now(root, url)
    for index in range(2000):
        repo.task(f"t-{index:05d}", status="paused", name=f"Renamed {index}", recurrence="{type: daily, every: 3}")
    return root, url


@pytest.mark.slow
def test_a_plan_of_2000_changed_tasks_through_the_forked_reader_completes(renamed_2000):
    root, url = renamed_2000
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "engine", "plan", "--repo", str(root), "--state", url, "--format", "json"],
            env=_environment(),  # CAMPAIGNS_NO_FORK unset: the forked reader answers
            capture_output=True,
            text=True,
            timeout=HANG_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"campaigns plan of 2,000 changed tasks did not return within {HANG_TIMEOUT} s")
    print(f"plan of 2,000 changed tasks: {time.monotonic() - started:.1f} s")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    updates = [change for change in plan["changes"] if change["action"] == "update"]
    assert len(updates) == 2000
    for change in updates:  # every change carries its field differences, from the reader
        index = int(change["id"].split("-")[1])
        assert {"path": "name", "kind": "changed", "old": f"Task {change['id']}", "new": f"Renamed {index}"} in change["diffs"]
        assert {"path": "schedule.recurrence.every", "kind": "changed", "old": 2, "new": 3} in change["diffs"]
    assert all("audience_size" in change for change in updates)  # every task change carries one (SPEC 5)
    counted = [change for change in updates if change["audience_size"]["after"] is not None]
    assert len(counted) == source_module.AUDIENCE_SIZE_LIMIT  # the others say why they were not counted
    assert all("not counted" in change["audience_size"]["reason"] for change in updates if change not in counted)


def test_the_forked_reader_and_the_local_one_plan_the_same(renamed_2000):
    root, url = renamed_2000
    forked = campaigns("plan", "--repo", str(root), "--state", url, "--format", "json", env=_environment(), timeout=HANG_TIMEOUT)
    local = campaigns(
        "plan", "--repo", str(root), "--state", url, "--format", "json", env={"CAMPAIGNS_NO_FORK": "1"}, timeout=HANG_TIMEOUT
    )
    assert forked.returncode == local.returncode == 0, forked.stderr + local.stderr
    one, other = json.loads(forked.stdout), json.loads(local.stdout)
    for document in (one, other):
        document.pop("created_at")
        document.pop("checksum")
    assert one == other


# -- the protocol itself, on huge messages in every order -------------------------------------------

PROTOCOL_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from engine.config.settings import read_platform
    from engine.plan.source import ForkedSource, SizeRequest
    from engine.state import StateStore

    url, root, order = sys.argv[1], sys.argv[2], sys.argv[3]
    huge = "x" * 3_000_000  # far larger than a pipe's buffer, in both directions
    with StateStore.open(url, root, create=False) as store:
        body = dict(store.resources(["task.flash-push"])["task.flash-push"].body, name=huge)
    bodies = {"task.flash-push": body}
    task = dict(body, audiences=["everyone"])
    audiences = {"everyone": {"site": "ph", "source": {"users": ["u-1", "u-2"]}}}
    sizes = SizeRequest(read_platform(Path(root)), root, {"flash-push": task}, audiences, {})

    def renamed(diffs):
        [diff] = diffs["task.flash-push"]
        return diff.path == "name" and diff.new == huge

    source = ForkedSource.start(url, root, create=False)
    try:
        if order == "details":
            diffs, counted = source.submit_details(bodies, sizes)()
            assert counted == {"flash-push": 2}, counted
        elif order == "details-then-diffs":  # a second question before the first answer was read
            pending = source.submit_details(bodies, sizes)
            assert renamed(source.field_diffs(bodies))
            diffs, _ = pending()
        else:  # two outstanding questions, redeemed in reverse order
            first = source.submit_details(bodies, sizes)
            second = source.submit_details(bodies, None)
            assert renamed(second()[0])
            diffs, _ = first()
        assert renamed(diffs)
    finally:
        source.close()
    print("ok")
    """
)


@pytest.fixture
def applied(tmp_path) -> tuple[Path, str]:
    repo = SmallRepo(tmp_path / "repo")
    url = f"sqlite:///{tmp_path}/state/state.db"
    record_pass(repo.root, url)
    apply_now(repo.root, url)
    return repo.root, url


@pytest.mark.parametrize("order", ["details", "details-then-diffs", "two-pending"])
def test_huge_requests_and_answers_in_any_order_never_hang(applied, order):
    root, url = applied
    try:
        done = subprocess.run(
            [sys.executable, "-c", PROTOCOL_SCRIPT, url, str(root), order],
            env=_environment(),
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the forked reader hung ({order})")
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


# -- failures: one clear error each, and the reader never outlives its planner -----------------------


def _sizes(root: Path) -> SizeRequest:
    return SizeRequest(platform={}, base_dir=str(root), tasks={"flash-push": {}}, audiences={}, attachments={})


def test_a_reader_that_dies_in_the_middle_of_an_answer_is_reported(applied, monkeypatch):
    root, url = applied
    parent = os.getpid()
    real_send = source_module._send
    sent = []

    def send_then_die_halfway(fd, value):
        if os.getpid() == parent:
            return real_send(fd, value)
        sent.append(value)
        if len(sent) == 1:  # the snapshot goes through
            return real_send(fd, value)
        os.write(fd, source_module._HEADER.pack(1_000_000) + b"\x80" * 1000)  # a tenth of an answer
        os._exit(7)

    monkeypatch.setattr(source_module, "_send", send_then_die_halfway)
    source = ForkedSource.start(url, root, create=False)
    assert source.snapshot().serial == 1
    answer = source.submit_details({"task.flash-push": {"name": "x"}}, None)
    with pytest.raises(CampaignsError, match=r"state reader process ended unexpectedly \(exit status 7\)"):
        answer()
    with pytest.raises(CampaignsError, match="ended unexpectedly"):  # and it stays failed
        source.field_diffs({"task.flash-push": {"name": "y"}})
    source.close()


def test_a_reader_killed_before_it_answers_is_reported(applied, monkeypatch):
    root, url = applied

    def killed(store, bodies):
        os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(source_module, "diffs_against_state", killed)
    source = ForkedSource.start(url, root, create=False)
    with pytest.raises(CampaignsError, match=r"ended unexpectedly \(killed by SIGKILL\)"):
        source.field_diffs({"task.flash-push": {"name": "x"}})
    source.close()


def test_a_request_to_a_reader_that_is_gone_is_reported(applied):
    root, url = applied
    source = ForkedSource.start(url, root, create=False)
    source.snapshot()
    os.kill(source.pid, signal.SIGKILL)
    time.sleep(0.2)
    with pytest.raises(CampaignsError, match="ended unexpectedly"):  # a broken pipe, not a silent exit
        source.field_diffs({"task.flash-push": {"name": "x" * 1_000_000}})
    source.close()


def test_errors_in_the_reader_come_back_as_one_line(applied, monkeypatch):
    root, url = applied

    def user_error(store, bodies):
        raise CampaignsError("the state is locked by someone")

    def bug(store, request):
        raise KeyError("audiences")

    monkeypatch.setattr(source_module, "diffs_against_state", user_error)
    source = ForkedSource.start(url, root, create=False)
    with pytest.raises(CampaignsError, match="^the state is locked by someone$"):
        source.field_diffs({"task.flash-push": {"name": "x"}})
    source.close()

    monkeypatch.setattr(source_module, "sizes_from_directory", bug)
    source = ForkedSource.start(url, root, create=False)
    with pytest.raises(RuntimeError, match=r"^reading the state: KeyError: 'audiences'$"):
        source.submit_details({}, _sizes(root))()
    source.close()


def test_an_unreadable_state_is_one_line_from_the_command(tmp_path, applied):
    root, _ = applied
    bad = tmp_path / "not-a-state.db"
    bad.write_text("garbage\n")
    done = campaigns("plan", "--repo", str(root), "--state", f"sqlite:///{bad}", env=_environment())
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "is not a campaigns state" in done.stderr and "Traceback" not in done.stderr


def test_closing_with_an_answer_pending_stops_the_reader_at_once(applied, monkeypatch):
    root, url = applied

    def endless(store, bodies):
        time.sleep(600)

    monkeypatch.setattr(source_module, "diffs_against_state", endless)
    source = ForkedSource.start(url, root, create=False)
    source.submit_details({"task.flash-push": {"name": "x"}}, None)  # the planner failed before it read the answer
    started = time.monotonic()
    source.close()
    assert time.monotonic() - started < source_module._REAP_SECONDS
    assert os.waitstatus_to_exitcode(source.exit_status) == -signal.SIGKILL


def test_the_reader_stops_by_itself_when_closed_even_with_forked_workers_alive(applied):
    """Validation workers are forked after the reader; they must not keep its pipes open."""
    root, url = applied
    source = ForkedSource.start(url, root, create=False)
    source.snapshot()
    worker = os.fork()
    if worker == 0:  # a stand-in for a validation worker that outlives the plan
        time.sleep(30)
        os._exit(0)
    try:
        source.close()
        assert source.exit_status is not None
        assert os.waitstatus_to_exitcode(source.exit_status) == 0  # saw EOF and exited, not killed
    finally:
        os.kill(worker, signal.SIGKILL)
        os.waitpid(worker, 0)


def test_questions_after_close_are_refused(applied):
    root, url = applied
    source = ForkedSource.start(url, root, create=False)
    assert source.snapshot().serial == 1
    source.close()
    source.close()  # closing twice is harmless
    with pytest.raises(CampaignsError, match="state reader is closed"):
        source.field_diffs({"task.flash-push": {"name": "x"}})
    assert source.snapshot().serial == 1  # what was read stays readable
