"""Approval evidence from GitHub pull_request events (the vendored fixtures) and --approved-by."""

from __future__ import annotations

import copy
import json

import pytest
from repos import MERGED, MERGED_BY_AUTHOR, UNMERGED

from engine.apply.approval import ApprovalPolicy, ApprovalRefused, Evidence, approval_from_event, read_event
from engine.errors import UsageError

POLICY = ApprovalPolicy(main_branch="main", forbid_self_merge=False)
STRICT = ApprovalPolicy(main_branch="main", forbid_self_merge=True)


def event(path) -> dict:
    return json.loads(path.read_text())


def test_merged_pull_request_is_approval_with_everything_recorded():
    approval = approval_from_event(event(MERGED), STRICT)
    pr = event(MERGED)["pull_request"]
    assert approval.kind == "github"
    assert approval.pr_number == pr["number"] == 2
    assert approval.author == pr["user"]["login"] == "Codertocat"
    assert approval.approved_by == approval.merged_by == pr["merged_by"]["login"] == "octocat"
    assert approval.reason == pr["body"] and approval.reason.startswith("Reason to run")
    assert approval.merge_commit == pr["merge_commit_sha"]
    assert approval.pr_title == pr["title"] and approval.pr_url == pr["html_url"]


def test_closed_unmerged_pull_request_is_no_approval():
    with pytest.raises(ApprovalRefused, match="closed without being merged"):
        approval_from_event(event(UNMERGED), POLICY)


def test_self_merge_is_refused_only_when_the_policy_forbids_it():
    assert approval_from_event(event(MERGED_BY_AUTHOR), POLICY).merged_by == "Codertocat"
    with pytest.raises(ApprovalRefused, match="merged by its own author 'Codertocat'.*forbid_self_merge"):
        approval_from_event(event(MERGED_BY_AUTHOR), STRICT)


def test_pull_request_merged_into_another_branch_is_no_approval():
    other = copy.deepcopy(event(MERGED))
    other["pull_request"]["base"]["ref"] = "release-1"
    with pytest.raises(ApprovalRefused, match="targets branch 'release-1', not the main branch 'main'"):
        approval_from_event(other, POLICY)
    assert approval_from_event(other, ApprovalPolicy(main_branch="release-1")).pr_number == 2


def test_an_event_that_is_not_a_pull_request_is_no_approval():
    with pytest.raises(ApprovalRefused, match="not a pull_request event"):
        approval_from_event({"ref": "refs/heads/main", "after": "abc"}, POLICY)


def test_unreadable_event_files(tmp_path):
    with pytest.raises(ApprovalRefused, match="cannot read"):
        read_event(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ApprovalRefused, match="not valid JSON"):
        read_event(broken)


def test_manual_approval_needs_both_name_and_reason():
    with pytest.raises(UsageError, match="--approved-by needs --reason"):
        Evidence.from_options(None, "alice", None, env={})
    with pytest.raises(UsageError, match="--reason needs --approved-by"):
        Evidence.from_options(None, None, "because", env={})
    with pytest.raises(UsageError, match="either --event"):
        Evidence.from_options(str(MERGED), "alice", "because", env={})
    approval = Evidence.from_options(None, "alice", "because", env={}).resolve(POLICY)
    assert (approval.kind, approval.approved_by, approval.reason) == ("manual", "alice", "because")


def test_event_path_comes_from_github_actions_environment():
    evidence = Evidence.from_options(None, None, None, env={"GITHUB_EVENT_PATH": str(MERGED)})
    assert evidence.from_env and evidence.resolve(POLICY).pr_number == 2
    assert Evidence.from_options(None, None, None, env={}).resolve(POLICY) is None
    explicit = Evidence.from_options(str(UNMERGED), None, None, env={"GITHUB_EVENT_PATH": str(MERGED)})
    with pytest.raises(ApprovalRefused):
        explicit.resolve(POLICY)
