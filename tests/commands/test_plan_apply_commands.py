"""``campaigns plan`` and ``campaigns apply`` through the real CLI, on both backends."""

from __future__ import annotations

import json

import pytest
from cli_runner import campaigns
from repos import MERGED, MERGED_BY_AUTHOR, UNMERGED, SmallRepo, record_pass

from engine.state import StateStore


@pytest.fixture
def repo(tmp_path) -> SmallRepo:
    return SmallRepo(tmp_path / "repo", forbid_self_merge=True)


def run(repo, url, *args, env=None):
    return campaigns(*args, "--repo", str(repo.root), "--state", url, env=env)


def serial(repo, url) -> int:
    with StateStore.open(url, repo.root) as store:
        return store.meta().serial


def test_detailed_exit_codes(repo, state_url):
    result = run(repo, state_url, "plan", "--detailed-exitcode")
    assert result.code == 2, result.err
    assert "Plan: 7 to create, 0 to update, 0 to delete." in result.out
    assert run(repo, state_url, "plan").code == 0  # without the flag, changes are no error
    record_pass(repo.root, state_url)
    assert run(repo, state_url, "apply", "--approved-by", "alice", "--reason", "go").code == 0
    result = run(repo, state_url, "plan", "--detailed-exitcode")
    assert result.code == 0, result.err
    assert "No changes." in result.out


def test_invalid_repository_cannot_be_planned_or_applied(repo, state_url):
    repo.write("campaigns/xmas/flash-push.yaml", (repo.root / "campaigns/xmas/flash-push.yaml").read_text().replace("creatives: [flash-a]", "creatives: [nope]"))
    for command in (("plan", "--detailed-exitcode"), ("apply", "--approved-by", "a", "--reason", "b")):
        result = run(repo, state_url, *command)
        assert result.code == 1
        assert "campaigns/xmas/flash-push.yaml:" in result.err and "unknown-reference" in result.err
        assert "Error: the repository does not validate (1 error)" in result.err
        assert "Traceback" not in result.err


def test_formats(repo, state_url):
    markdown = run(repo, state_url, "plan", "--format", "markdown").out
    assert markdown.splitlines()[0] == "<!-- campaigns-plan -->"
    document = json.loads(run(repo, state_url, "plan", "--format", "json").out)
    assert document["format_version"] == 1 and document["summary"]["create"] == 7
    assert "\x1b[" not in run(repo, state_url, "plan").out
    assert "\x1b[" in run(repo, state_url, "plan", "--color").out


def test_saved_plan_is_applied_and_then_stale(repo, state_url, tmp_path):
    record_pass(repo.root, state_url)
    path = tmp_path / "plan.json"
    result = run(repo, state_url, "plan", "--out", str(path))
    assert result.code == 0 and path.exists() and "Saved the plan" in result.err
    assert json.loads(path.read_text())["serial"] == 0
    applied = run(repo, state_url, "apply", str(path), "--approved-by", "alice", "--reason", "go")
    assert applied.code == 0, applied.err
    assert applied.out.strip().splitlines()[-1] == "Apply complete! 7 created, 0 updated, 0 deleted; serial 1."
    again = run(repo, state_url, "apply", str(path), "--approved-by", "alice", "--reason", "go")
    assert again.code == 1
    assert again.err.startswith("Error: the plan is stale: it was made at state serial 0")
    assert len(again.err.strip().splitlines()) == 1


def test_edited_or_truncated_plan_files_are_refused_in_one_line(repo, state_url, tmp_path):
    path = tmp_path / "plan.json"
    run(repo, state_url, "plan", "--out", str(path))
    document = json.loads(path.read_text())
    document["changes"][0]["body"] = {"name": "hand edited"}
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(document))
    truncated = tmp_path / "truncated.json"
    truncated.write_bytes(path.read_bytes()[:-200])
    for bad, message in ((edited, "was modified after it was saved"), (truncated, "is truncated")):
        result = run(repo, state_url, "apply", str(bad), "--approved-by", "alice", "--reason", "go")
        assert result.code == 1
        assert message in result.err and len(result.err.strip().splitlines()) == 1
        assert "Traceback" not in result.err
    assert serial(repo, state_url) == 0


@pytest.mark.parametrize(
    "fixture,ok,message",
    [
        (MERGED, True, "Approved by pull request #2 (Codertocat, merged by octocat)."),
        (UNMERGED, False, "closed without being merged"),
        (MERGED_BY_AUTHOR, False, "merged by its own author 'Codertocat'"),
    ],
)
def test_apply_with_github_events(repo, state_url, fixture, ok, message):
    record_pass(repo.root, state_url)
    by_option = run(repo, state_url, "apply", "--event", str(fixture))
    assert (by_option.code == 0) is ok, by_option.err
    assert message in (by_option.out if ok else by_option.err)
    if not ok:
        assert "nothing was changed" in by_option.err
        assert "needs-approval: 7 changes" in by_option.err
        assert serial(repo, state_url) == 0
        by_env = run(repo, state_url, "apply", env={"GITHUB_EVENT_PATH": str(fixture)})
        assert by_env.code == 1 and message in by_env.err
    else:
        with StateStore.open(state_url, repo.root) as store:
            assert store.history()[-1].approval.pr_number == 2


def test_apply_reads_the_event_from_github_actions(repo, state_url):
    record_pass(repo.root, state_url)
    result = run(repo, state_url, "apply", env={"GITHUB_EVENT_PATH": str(MERGED)})
    assert result.code == 0, result.err
    assert "merged by octocat" in result.out


def test_apply_option_errors_are_one_line(repo, state_url):
    result = run(repo, state_url, "apply", "--approved-by", "alice")
    assert result.code == 1
    assert result.err.strip() == "Error: --approved-by needs --reason: the reason to run is recorded in the history"
    result = run(repo, state_url, "apply")
    assert result.code == 1 and "no approval evidence" in result.err
    assert run(repo, state_url, "apply", "--lock-timeout", "-1").code == 2  # click usage error


def test_apply_without_changes_needs_no_evidence(repo, state_url):
    record_pass(repo.root, state_url)
    run(repo, state_url, "apply", "--approved-by", "alice", "--reason", "go")
    result = run(repo, state_url, "apply")
    assert result.code == 0
    assert "No changes" in result.out and "nothing to approve" in result.out


def test_apply_lists_what_it_did_and_the_summary(repo, state_url):
    record_pass(repo.root, state_url)
    run(repo, state_url, "apply", "--approved-by", "alice", "--reason", "go")
    repo.write("audiences/everyone.yaml", "name: Everyone\nsite: ph\nsource:\n  users: [u-1]\n")
    repo.delete("audiences/vips.yaml")
    result = run(repo, state_url, "apply", "--approved-by", "alice", "--reason", "smaller audience")
    assert result.code == 0, result.err
    lines = result.out.strip().splitlines()
    assert "~ audience.everyone" in lines and "- audience.vips" in lines
    assert lines[-1] == "Apply complete! 0 created, 1 updated, 1 deleted; serial 2."
