"""``campaigns state list|show|history|unlock``, ``campaigns status`` and ``campaigns test``
through the CLI, and where the state URL comes from."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys

import pytest
from cli_runner import campaigns
from repos import MERGED, SmallRepo, record_pass

from engine.config.settings import DEFAULT_STATE_URL, resolve_state_url
from engine.errors import UsageError
from engine.state import StateStore


@pytest.fixture
def repo(tmp_path) -> SmallRepo:
    return SmallRepo(tmp_path / "repo")


def run(repo, url, *args, env=None):
    return campaigns(*args, "--repo", str(repo.root), "--state", url, env=env)


@pytest.fixture
def applied(repo, state_url) -> SmallRepo:
    repo.task("parked", status="paused")
    record_pass(repo.root, state_url, "flash-push")
    result = run(repo, state_url, "apply", "--event", str(MERGED))
    assert result.code == 0, result.err
    return repo


def test_state_list(applied, state_url):
    text = run(applied, state_url, "state", "list")
    assert text.code == 0
    rows = {line.split()[0]: line.split() for line in text.out.splitlines()[1:]}
    assert rows["task.flash-push"][-1] == "running" and rows["task.parked"][-1] == "draft"
    assert rows["creative.flash-a"][1] == "1"
    document = json.loads(run(applied, state_url, "state", "list", "--format", "json").out)
    assert document["serial"] == 1
    addresses = {r["address"]: r for r in document["resources"]}
    assert len(addresses) == 8 and addresses["task.flash-push"]["status"] == "running"


def test_state_show(applied, state_url):
    result = run(applied, state_url, "state", "show", "task.flash-push", "--format", "json")
    assert result.code == 0
    record = json.loads(result.out)
    assert record["body"]["campaign"] == "xmas" and record["status"]["status"] == "running"
    assert record["last_pilot_test"]["passed"] is True
    text = run(applied, state_url, "state", "show", "creative.flash-a").out
    assert '"title": "Hi {{ user.first_name }}"' in text
    missing = run(applied, state_url, "state", "show", "task.flash-pus")
    assert missing.code == 1 and "did you mean 'task.flash-push'?" in missing.err


def test_state_history(applied, state_url):
    record_pass(applied.root, state_url)
    applied.delete_task("flash-push")
    assert run(applied, state_url, "apply", "--approved-by", "bob", "--reason", "done with it").code == 0
    entries = json.loads(run(applied, state_url, "state", "history", "--format", "json").out)
    assert [e["serial"] for e in entries] == [1, 2]
    first, second = entries
    assert first["approval"]["pr_number"] == 2 and first["approval"]["merged_by"] == "octocat"
    assert first["approval"]["author"] == "Codertocat" and first["approval"]["merge_commit"].startswith("c4295bd")
    assert first["approval"]["reason"].startswith("Reason to run")
    assert second["approval"] == {
        "kind": "manual", "approved_by": "bob", "reason": "done with it", "pr_number": None, "author": None,
        "merged_by": None, "merge_commit": None, "pr_title": None, "pr_url": None,
    }
    assert second["changes"][0]["status"] == {"from": "running", "to": "completed"}
    text = run(applied, state_url, "state", "history").out
    assert "PR #2 by Codertocat, merged by octocat" in text and "approved by bob" in text
    last = json.loads(run(applied, state_url, "state", "history", "--limit", "1", "--format", "json").out)
    assert [e["serial"] for e in last] == [2]


def test_state_commands_do_not_create_a_state(repo, tmp_path):
    url = f"sqlite:///{tmp_path}/nothing-here/state.db"
    result = run(repo, url, "state", "list")
    assert result.code == 1 and "no campaigns state" in result.err
    assert not (tmp_path / "nothing-here" / "state.db").exists()


def test_state_commands_work_on_an_invalid_repository(applied, state_url):
    applied.write("creatives/broken.yaml", "name: [unclosed\n")
    assert run(applied, state_url, "plan").code == 1
    assert run(applied, state_url, "state", "list").code == 0
    assert run(applied, state_url, "status").code == 0


def test_unlock_a_stale_lock(repo, state_url, state_backend, tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, state_url, str(repo.root)], stdout=subprocess.PIPE, text=True
    )
    lock_id = holder.stdout.readline().strip()
    try:
        busy = run(repo, state_url, "apply", "--approved-by", "a", "--reason", "b")
        assert busy.code == 1 and f"campaigns state unlock {lock_id}" in busy.err
        if state_backend == "sqlite":  # the holder is alive: SQLite refuses, the kill frees it
            refused = run(repo, state_url, "state", "unlock", lock_id)
            assert refused.code == 1
            holder.send_signal(signal.SIGKILL)
            holder.wait()
        result = run(repo, state_url, "state", "unlock", lock_id)
        assert result.code == 0, result.err
        assert "Removed the lock held by" in result.out and f"pid {holder.pid}" in result.out
        assert run(repo, state_url, "state", "unlock", lock_id).code == 1  # gone
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    with StateStore.open(state_url, repo.root) as store:
        assert store.lock_holder() is None or not store.lock_holder().held


HOLD = """
import sys, time
from engine.state import StateStore
with StateStore.open(sys.argv[1], sys.argv[2]) as store:
    with store.lock("apply") as info:
        print(info.lock_id, flush=True)
        time.sleep(120)
"""


def test_status(applied, state_url):
    at = "2026-12-20T00:00:00Z"  # before the first occurrence (2027-01-04)
    result = run(applied, state_url, "status", "--format", "json", "--now", at)
    assert result.code == 0, result.err
    document = json.loads(result.out)
    rows = {row["task"]: row for row in document["tasks"]}
    push = rows["flash-push"]
    assert push["status"] == "running" and push["campaign"] == "xmas" and push["channel"] == "push"
    assert push["last_pilot_test"]["passed"] is True and push["last_pilot_test"]["current_content"] is True
    start = dt.datetime.fromisoformat(push["next_occurrence"]["start"])
    assert start.utcoffset() == dt.timedelta(hours=8)
    assert push["next_occurrence"]["key"] == "2027-01-04"
    assert rows["parked"]["status"] == "draft" and rows["parked"]["last_pilot_test"] is None
    text = run(applied, state_url, "status", "--now", at).out
    assert "flash-push" in text and "running" in text and "2027-01-04 09:00" in text and "Times are in Asia/Manila" in text


def test_pilot_test_command(repo, state_url):
    # testers the directory does not know, listed as the site's testers: rendered with the examples
    repo.write("platform.yaml", (repo.root / "platform.yaml").read_text().replace("testers: [u-tester-1]", "testers: [u-tester-1, u-a, u-b]"))
    result = run(repo, state_url, "test", "flash-push", "--tester", "u-a", "--tester", "u-b")
    assert result.code == 0, result.err
    assert "sent    u-a <- flash-a (examples)" in result.out and "title: Hi Maria" in result.out
    assert "Pilot test passed and recorded (2 messages)." in result.out
    document = json.loads(run(repo, state_url, "test", "flash-push", "--format", "json").out)
    assert document["passed"] and [m["tester"] for m in document["messages"]] == ["u-tester-1", "u-a", "u-b"]  # the site's
    unknown = run(repo, state_url, "test", "flash-psh")
    assert unknown.code == 1 and "did you mean 'flash-push'?" in unknown.err


def test_pilot_test_command_fails_clearly_on_a_render_failure(repo, state_url):
    from engine.delivery.directory import import_users

    users = repo.root / "users.csv"
    users.write_text("user_id,points\nu-nameless,5\n")
    with StateStore.open(state_url, repo.root) as store:
        import_users(store, users)
    result = run(repo, state_url, "test", "flash-push", "--tester", "u-nameless")
    assert result.code == 1
    assert "FAILED  u-nameless <- flash-a: missing-variable: title: the user has no 'first_name' attribute" in result.out
    assert result.err.startswith("Error: pilot test of flash-push failed: 1 of 1 messages were not sent")
    assert "Traceback" not in result.err


def test_state_url_precedence(tmp_path):
    repo = SmallRepo(tmp_path / "repo")
    assert resolve_state_url(repo.root, None, env={}) == DEFAULT_STATE_URL
    repo.write("platform.yaml", "state: sqlite:///from-platform.db\n" + (repo.root / "platform.yaml").read_text())
    assert resolve_state_url(repo.root, None, env={}) == "sqlite:///from-platform.db"
    assert resolve_state_url(repo.root, None, env={"CAMPAIGNS_STATE": "sqlite:///env.db"}) == "sqlite:///env.db"
    assert resolve_state_url(repo.root, "sqlite:///option.db", env={"CAMPAIGNS_STATE": "x"}) == "sqlite:///option.db"
    repo.write("platform.yaml", "state: [not, a, url]\n")
    with pytest.raises(UsageError, match="'state' must be a database URL"):
        resolve_state_url(repo.root, None, env={})
    repo.write("platform.yaml", "state: {unclosed\n")
    with pytest.raises(UsageError, match="platform.yaml:"):
        resolve_state_url(repo.root, None, env={})


def test_relative_sqlite_state_is_inside_the_repository(tmp_path):
    repo = SmallRepo(tmp_path / "repo")
    record_pass(repo.root, DEFAULT_STATE_URL)  # the store resolves it against the repository root
    os.makedirs(tmp_path / "elsewhere")
    result = campaigns("plan", "--repo", str(repo.root), cwd=tmp_path / "elsewhere", env={"CAMPAIGNS_STATE": ""})
    assert result.code == 0, result.err
    assert (repo.root / ".campaigns" / "state.db").exists()
    assert not (tmp_path / "elsewhere" / ".campaigns").exists()
