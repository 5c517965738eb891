"""``campaigns plan`` warns when members of a task's audiences lack an attribute its creatives
print without a default (issue 11 item 3), with how many, from the user directory; sampled, and
saying so, when the audience is large. On SQLite and PostgreSQL, forked state reader or not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import campaigns
from repos import SmallRepo

from engine.delivery.directory import import_users
from engine.state import StateStore


def directory(tmp_path: Path, url: str, root: Path, rows: list[str]) -> None:
    users = tmp_path / "users.csv"
    users.write_text("user_id,first_name,points\n" + "\n".join(rows) + "\n")
    with StateStore.open(url, root) as store:
        import_users(store, users)


def task_change(plan: dict, task_id: str) -> dict:
    return next(c for c in plan["changes"] if c["address"] == f"task.{task_id}")


@pytest.mark.parametrize("fork", [True, False], ids=["forked-reader", "in-process"])
def test_plan_counts_members_without_a_printed_attribute(tmp_path, state_url, fork):
    repo = SmallRepo(tmp_path / "repo")  # audience everyone: u-1, u-2, u-tester-1; flash-a's title prints first_name
    directory(tmp_path, state_url, repo.root, ["u-1,Ana,3", "u-2,,4", "u-tester-1,,5"])
    env = {} if fork else {"CAMPAIGNS_NO_FORK": "1"}
    result = campaigns("plan", "--format", "json", "--state", state_url, "--repo", str(repo.root), env=env)
    assert result.code == 0, result.err
    [warning] = task_change(json.loads(result.out), "flash-push")["warnings"]
    assert warning["code"] == "missing-attribute"
    assert warning["message"].startswith(
        "2 of 3 members lack first_name, which creative flash-a prints without a default: their messages will fail"
    )
    text = campaigns("plan", "--state", state_url, "--repo", str(repo.root), env=env)
    assert "warning: missing-attribute: 2 of 3 members lack first_name" in text.out
    markdown = campaigns("plan", "--format", "markdown", "--state", state_url, "--repo", str(repo.root), env=env)
    assert "- warning: missing-attribute: 2 of 3 members lack first_name" in markdown.out


def test_no_warning_when_the_creative_has_a_default_or_nobody_lacks_it(tmp_path, state_url):
    repo = SmallRepo(tmp_path / "repo")
    directory(tmp_path, state_url, repo.root, ["u-1,Ana,3", "u-2,,4", "u-tester-1,Tess,5"])
    repo.creative("flash-a", title="Hi {{ user.first_name | default('there') }}", content="{{ user.points }} points")
    plan = json.loads(campaigns("plan", "--format", "json", "--state", state_url, "--repo", str(repo.root)).out)
    assert task_change(plan, "flash-push")["warnings"] == []


def test_a_large_audience_is_sampled_and_the_warning_says_so(tmp_path, state_url, monkeypatch):
    from engine.delivery import attribute_gaps

    monkeypatch.setattr(attribute_gaps, "SAMPLE_MEMBERS", 1000)
    repo = SmallRepo(tmp_path / "repo")
    repo.write("audiences/everyone.yaml", "name: Everyone\nsite: ph\nsource:\n  where:\n    all: [{attr: points, exists: true}]\n")
    directory(tmp_path, state_url, repo.root, [f"u{n:05d},{'' if n % 4 == 0 else 'N'},{n}" for n in range(3000)])
    result = campaigns("plan", "--format", "json", "--state", state_url, "--repo", str(repo.root), env={"CAMPAIGNS_NO_FORK": "1"})
    assert result.code == 0, result.err
    [warning] = task_change(json.loads(result.out), "flash-push")["warnings"]
    assert warning["message"].startswith(
        "250 of a sample of 1,000 members (the first by user id of 3,000; about 25%) lack first_name"
    )


def test_a_saved_plan_keeps_its_warnings(tmp_path, state_url):
    from engine.plan import planfile

    repo = SmallRepo(tmp_path / "repo")
    directory(tmp_path, state_url, repo.root, ["u-1,,3"])
    saved = tmp_path / "plan.json"
    result = campaigns("plan", "--out", str(saved), "--state", state_url, "--repo", str(repo.root))
    assert result.code == 0, result.err
    change = planfile.load(saved).change("task.flash-push")
    assert [w.code for w in change.warnings] == ["missing-attribute"]
