"""The whole flow from the shell on the shipped example, on SQLite and PostgreSQL: validate,
plan, test, apply with the merged pull request's event, then plan again with nothing to do."""

from __future__ import annotations

import json

import pytest
from cli_runner import campaigns_process
from repos import EXAMPLE_ACTIVE, MERGED, example_repo

pytestmark = pytest.mark.slow


def test_whole_flow_on_the_shipped_example(tmp_path, state_url):
    root = example_repo(tmp_path / "example")
    env = {"CAMPAIGNS_STATE": state_url, "GITHUB_EVENT_PATH": ""}

    def sh(*args: str):
        return campaigns_process(*args, cwd=root, env=env)

    assert sh("validate").code == 0
    planned = sh("plan", "--detailed-exitcode", "--format", "markdown")
    assert planned.code == 2, planned.err
    assert planned.out.startswith("<!-- campaigns-plan -->")
    assert "needs-pilot-test" in planned.out

    refused = sh("apply", "--event", str(MERGED))
    assert refused.code == 1 and "needs-pilot-test" in refused.err

    for task in EXAMPLE_ACTIVE:
        tested = sh("test", task)
        assert tested.code == 0, tested.err
        assert "Pilot test passed and recorded" in tested.out
    outbox = (root / ".campaigns" / "outbox" / "push.jsonl").read_text().splitlines()
    assert {json.loads(line)["occurrence"] for line in outbox} == {"test"}

    plan = sh("plan", "--out", "plan.json")
    assert plan.code == 0 and "[blocked: needs-pilot-test" not in plan.out and "  needs-pilot-test:" not in plan.out
    assert "! the repository is ahead of the state: the apply of pull request #2" in plan.out  # the refused apply, as drift

    applied = sh("apply", "plan.json", "--event", str(MERGED))
    assert applied.code == 0, applied.err
    assert "Approved by pull request #2 (Codertocat, merged by octocat)." in applied.out
    assert applied.out.strip().endswith("deleted; serial 1.")

    again = sh("plan", "--detailed-exitcode")
    assert again.code == 0, again.err
    assert "No changes." in again.out

    status = json.loads(sh("status", "--format", "json").out)
    statuses = {row["task"]: row["status"] for row in status["tasks"]}
    assert statuses == {
        "flash-sale-push": "running",
        "flash-sale-sms": "running",
        "weekly-points-inbox": "running",
        "monthly-rewards-mp": "draft",
    }
    history = json.loads(sh("state", "history", "--format", "json").out)
    assert history[-1]["approval"]["pr_number"] == 2
