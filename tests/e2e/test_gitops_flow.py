"""End to end, the way a team works: branches, pull requests, merges as approvals, deliveries.

A real temporary git repository, the real ``campaigns`` command as a process, the GitHub event
fixtures, and the state on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cli_runner import campaigns_process
from repos import PROJECT

FIXTURES = PROJECT / "tests" / "fixtures" / "github"
FIRST_WINDOW = "2026-12-01T09:30:00+08:00"  # inside the first window of the task's first occurrence
NEXT_OCCURRENCE = "2026-12-03T09:30:00+08:00"  # daily every 2: the next occurrence


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def outbox(repo: Path, channel: str = "push") -> list[dict]:
    path = repo / ".campaigns" / "outbox" / f"{channel}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def merge_event(repo: Path, tmp_path: Path, *, number: int, reason: str, branch: str) -> Path:
    """The merged pull request fixture, as GitHub would send it for this merge."""
    event = json.loads((FIXTURES / "pull_request.closed.merged.json").read_text())
    event["number"] = number
    event["pull_request"]["number"] = number
    event["pull_request"]["body"] = reason
    event["pull_request"]["head"]["ref"] = branch
    event["pull_request"]["merge_commit_sha"] = git(repo, "rev-parse", "HEAD")
    path = tmp_path / f"event-{number}.json"
    path.write_text(json.dumps(event))
    return path


@pytest.fixture
def team_repo(tmp_path: Path) -> Path:
    """main: the platform, templates, audiences and a campaign; no creatives or tasks yet."""
    repo = tmp_path / "campaigns-repo"
    repo.mkdir()
    for part in ("platform.yaml", "templates", "audiences", "schemas"):
        source = PROJECT / part
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, repo / part)
    (repo / "campaigns" / "december-flash-sale").mkdir(parents=True)
    shutil.copy2(PROJECT / "campaigns/december-flash-sale/campaign.yaml", repo / "campaigns/december-flash-sale/campaign.yaml")
    (repo / ".gitignore").write_text(".campaigns/\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "platform@example.com")
    git(repo, "config", "user.name", "Platform team")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Platform, templates and audiences")
    return repo


def test_pull_request_to_delivery_and_back(team_repo: Path, tmp_path: Path, state_url: str):
    repo = team_repo
    env = {"CAMPAIGNS_STATE": state_url, "GITHUB_EVENT_PATH": ""}

    def run(*args: str, ok: tuple[int, ...] = (0,)):
        result = campaigns_process(*args, cwd=repo, env=env)
        assert result.code in ok, f"campaigns {' '.join(args)} exited {result.code}\n{result.out}\n{result.err}"
        return result

    run("users", "import", "audiences/users.csv")

    # 1. on a branch, a marketer adds a task and its creative
    git(repo, "checkout", "-q", "-b", "add-flash-sale")
    (repo / "creatives").mkdir()
    shutil.copy2(PROJECT / "creatives/flash-a.yaml", repo / "creatives/flash-a.yaml")
    task = (PROJECT / "campaigns/december-flash-sale/flash-sale-push.yaml").read_text()
    task = task.replace("creatives: [flash-a, flash-b]", "creatives: [flash-a]")
    (repo / "campaigns/december-flash-sale/flash-sale-push.yaml").write_text(task)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Add the flash-sale push task")

    # 2. validate passes
    assert json.loads(run("validate", "--format", "json", "--now", FIRST_WINDOW).out)["ok"] is True

    # 3. the plan shows the creation, blocked by the pilot test and the approval
    plan = json.loads(run("plan", "--format", "json", "--detailed-exitcode", ok=(2,)).out)
    change = next(c for c in plan["changes"] if c["address"] == "task.flash-sale-push")
    assert change["action"] == "create"
    assert {b["code"] for b in change["blockers"]} == {"needs-pilot-test", "needs-approval"}

    # 4. the pilot test reaches the testers
    run("test", "flash-sale-push")
    pilot = outbox(repo)
    assert pilot and {m["occurrence"] for m in pilot} == {"test"}
    assert {m["user_id"] for m in pilot} == {"u-tester-1", "u-tester-2"}

    # 5. the reviewer merges: a merge commit lands on main
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "add-flash-sale", "-m", "Merge pull request #2 from marketer/add-flash-sale")

    # 6. apply with the merged-event fixture records the approval and starts the task
    applied = run("apply", "--event", str(merge_event(repo, tmp_path, number=2, reason="Reason to run: December flash sale for new users in PH.", branch="add-flash-sale")))
    assert "Apply complete!" in applied.out
    state = json.loads(run("state", "show", "task.flash-sale-push", "--format", "json").out)
    assert state["status"]["status"] == "running"
    assert state["last_pilot_test"]["passed"] is True

    # 7. the executor delivers to the audience at a window time
    run("run", "--once", "--now", FIRST_WINDOW)
    delivered = [m for m in outbox(repo) if m["occurrence"] == "2026-12-01"]
    report = json.loads(run("report", "flash-sale-push", "--format", "json", "--now", FIRST_WINDOW).out)
    assert delivered and len(delivered) == len({m["user_id"] for m in delivered})
    first = next(o for o in report["occurrences"] if o["occurrence"] == "2026-12-01")
    assert first["sent"] == len(delivered) and first["pending"] == 0

    # 8. a second pull request deletes the task
    git(repo, "checkout", "-q", "-b", "stop-flash-sale")
    git(repo, "rm", "-q", "campaigns/december-flash-sale/flash-sale-push.yaml")
    git(repo, "commit", "-q", "-m", "Stop the flash-sale push")
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "stop-flash-sale", "-m", "Merge pull request #3 from marketer/stop-flash-sale")

    # 9. apply completes the task
    run("apply", "--event", str(merge_event(repo, tmp_path, number=3, reason="Reason to run: budget spent, stop the flash sale.", branch="stop-flash-sale")))
    status = json.loads(run("status", "--format", "json", "--now", FIRST_WINDOW).out)
    assert next(row for row in status["tasks"] if row["task"] == "flash-sale-push")["status"] == "completed"

    # 10. the next occurrence delivers nothing
    before = len(outbox(repo))
    run("run", "--once", "--now", NEXT_OCCURRENCE)
    assert len(outbox(repo)) == before
    assert not [m for m in outbox(repo) if m["occurrence"] == "2026-12-03"]

    # the history shows both approvals, with their pull request numbers and reasons
    history = json.loads(run("state", "history", "--format", "json").out)
    approvals = [(entry["approval"]["pr_number"], entry["approval"]["reason"]) for entry in history if entry["approval"]]
    assert approvals == [
        (2, "Reason to run: December flash sale for new users in PH."),
        (3, "Reason to run: budget spent, stop the flash sale."),
    ]
    assert all(entry["approval"]["merged_by"] == "octocat" for entry in history)
