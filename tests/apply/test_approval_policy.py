"""Approval cannot be weakened by the change it approves (issue 10 item 1), through the real
``campaigns apply --event FILE`` on SQLite and PostgreSQL.

The pull request controls every file in its checkout, platform.yaml included: the policy that
judges its merge is the one already applied in the state; before anything was applied, the
strictest reading (the repository's default branch, no self-merge).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_runner import campaigns
from repos import MERGED, PLATFORM, SmallRepo, record_pass

from engine.state import StateStore

AUTHOR = {"login": "marketer", "id": 101}
REVIEWER = {"login": "reviewer", "id": 202}


@pytest.fixture
def repo(tmp_path: Path) -> SmallRepo:
    return SmallRepo(tmp_path / "repo", forbid_self_merge=True)


class Events:
    """Merged-pull-request events built from the vendored fixture, one file each."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    def write(self, change: Callable[[dict], None] | None = None, *, raw: bytes | None = None) -> Path:
        self.count += 1
        path = self.folder / f"event-{self.count}.json"
        if raw is not None:
            path.write_bytes(raw)
            return path
        event = json.loads(MERGED.read_text())
        event["number"] = event["pull_request"]["number"] = 10 + self.count
        if change is not None:
            change(event)
        path.write_text(json.dumps(event))
        return path

    def merged(self, *, author: dict = AUTHOR, merged_by: dict = REVIEWER, base: str = "main") -> Path:
        def change(event: dict) -> None:
            pr = event["pull_request"]
            pr["user"], pr["merged_by"] = dict(author), dict(merged_by)
            pr["base"]["ref"] = base

        return self.write(change)

    def self_merged(self, *, base: str = "main") -> Path:
        return self.merged(merged_by=AUTHOR, base=base)


@pytest.fixture
def events(tmp_path: Path) -> Events:
    folder = tmp_path / "events"
    folder.mkdir()
    return Events(folder)


def apply(repo: SmallRepo, url: str, event: Path):
    return campaigns("apply", "--event", str(event), "--repo", str(repo.root), "--state", url)


def serial(repo: SmallRepo, url: str) -> int:
    with StateStore.open(url, repo.root) as store:
        return store.meta().serial


def platform(repo: SmallRepo, *, forbid: bool, main_branch: str = "main") -> None:
    text = PLATFORM.format(forbid=str(forbid).lower()).replace("main_branch: main", f"main_branch: {main_branch}")
    repo.write("platform.yaml", text)


def another_change(repo: SmallRepo, description: str) -> None:
    repo.write("campaigns/xmas/campaign.yaml", f"name: Christmas\ndescription: {description}\n")


def baseline(repo: SmallRepo, url: str, events: Events) -> None:
    """The first apply, merged by a reviewer: the repository's policy is now the applied one."""
    record_pass(repo.root, url)
    result = apply(repo, url, events.merged())
    assert result.code == 0, result.err
    assert serial(repo, url) == 1


def assert_refused(result, *fragments: str) -> None:
    assert result.code == 1, result.out + result.err
    assert "nothing was changed" in result.err and "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in result.err, result.err


# -- the two attacks --------------------------------------------------------------------------


def test_a_pull_request_that_turns_off_forbid_self_merge_is_not_approved_by_its_own_self_merge(repo, state_url, events):
    baseline(repo, state_url, events)
    platform(repo, forbid=False)  # the attack: loosen the policy in the very pull request
    another_change(repo, "now with self-approval")
    result = apply(repo, state_url, events.self_merged())
    assert_refused(result, "merged by its own author 'marketer'", "forbid_self_merge")
    assert serial(repo, state_url) == 1


def test_a_pull_request_that_moves_main_branch_is_not_approved_by_a_merge_into_that_branch(repo, state_url, events):
    baseline(repo, state_url, events)
    platform(repo, forbid=True, main_branch="develop")  # the attack: point main_branch at a branch it can merge into
    another_change(repo, "merged into develop")
    result = apply(repo, state_url, events.merged(base="develop"))
    assert_refused(result, "targets branch 'develop', not the main branch 'main'")
    assert serial(repo, state_url) == 1


# -- a policy change is applied under the old policy and governs later merges -----------------


def test_loosening_the_policy_is_approved_under_the_old_one_and_governs_the_next_merge(repo, state_url, events):
    baseline(repo, state_url, events)
    platform(repo, forbid=False)
    assert_refused(apply(repo, state_url, events.self_merged()), "forbid_self_merge")  # the old policy judges it
    assert apply(repo, state_url, events.merged()).code == 0  # a reviewer approves the loosening
    another_change(repo, "self-merged under the new policy")
    result = apply(repo, state_url, events.self_merged())
    assert result.code == 0, result.err
    assert "merged by marketer" in result.out and serial(repo, state_url) == 3


def test_tightening_the_policy_is_approved_under_the_old_one_and_governs_the_next_merge(tmp_path, state_url, events):
    repo = SmallRepo(tmp_path / "loose", forbid_self_merge=False)
    baseline(repo, state_url, events)
    platform(repo, forbid=True)
    result = apply(repo, state_url, events.self_merged())  # the old policy allowed self-merges
    assert result.code == 0, result.err
    another_change(repo, "self-merged after the tightening")
    assert_refused(apply(repo, state_url, events.self_merged()), "forbid_self_merge")
    assert apply(repo, state_url, events.merged()).code == 0
    assert serial(repo, state_url) == 3


def test_a_new_main_branch_governs_the_merges_after_it_is_applied(repo, state_url, events):
    baseline(repo, state_url, events)
    platform(repo, forbid=True, main_branch="refs/heads/release")  # the full ref names the branch
    assert apply(repo, state_url, events.merged(base="main")).code == 0  # judged by the old main branch
    another_change(repo, "release train")
    assert_refused(apply(repo, state_url, events.merged(base="main")), "not the main branch 'release'")
    assert apply(repo, state_url, events.merged(base="release")).code == 0
    assert serial(repo, state_url) == 3


# -- the first apply: nothing applied yet -------------------------------------------------------


def test_the_first_apply_is_not_judged_by_the_policy_it_brings(tmp_path, state_url, events):
    repo = SmallRepo(tmp_path / "first", forbid_self_merge=False)
    platform(repo, forbid=False, main_branch="develop")
    record_pass(repo.root, state_url)
    assert_refused(apply(repo, state_url, events.merged(base="develop")), "the repository's default branch 'main'")
    assert_refused(apply(repo, state_url, events.self_merged()), "first apply", "needs a reviewer other than the author")
    assert serial(repo, state_url) == 0
    assert apply(repo, state_url, events.merged()).code == 0
    another_change(repo, "now the applied policy rules")
    assert apply(repo, state_url, events.self_merged(base="develop")).code == 0
    assert serial(repo, state_url) == 2


def test_the_first_apply_targets_the_default_branch_github_reports(repo, state_url, events):
    record_pass(repo.root, state_url)

    def default_branch_master(base: str) -> Callable[[dict], None]:
        def change(event: dict) -> None:
            event["repository"]["default_branch"] = "master"
            event["pull_request"]["base"]["ref"] = base

        return change

    into_main = apply(repo, state_url, events.write(default_branch_master("main")))
    assert_refused(into_main, "targets branch 'main'", "the repository's default branch 'master'")
    result = apply(repo, state_url, events.write(default_branch_master("master")))
    assert result.code == 0, result.err


# -- logins -------------------------------------------------------------------------------------


def _set(path: str, value):
    def change(event: dict) -> None:
        target = event["pull_request"]
        *parents, last = path.split(".")
        for part in parents:
            target = target[part]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value

    return change


@pytest.mark.parametrize(
    "path,value,message",
    [
        ("user.login", KeyError, "does not say who opened it"),
        ("user.login", None, "does not say who opened it"),
        ("user.login", "", "does not say who opened it"),
        ("user", None, "does not say who opened it"),
        ("merged_by.login", KeyError, "does not say who merged it"),
        ("merged_by.login", None, "does not say who merged it"),
        ("merged_by.login", "", "does not say who merged it"),
        ("merged_by.login", " ", "does not say who merged it"),
        ("merged_by", None, "does not say who merged it"),
        ("merged_by.login", 42, "does not say who merged it"),
    ],
)
def test_a_missing_null_or_empty_login_is_no_approval(repo, state_url, events, path, value, message):
    record_pass(repo.root, state_url)
    assert_refused(apply(repo, state_url, events.write(_set(path, value))), message)
    assert serial(repo, state_url) == 0


def test_logins_compare_case_insensitively_so_a_recased_login_is_still_a_self_merge(repo, state_url, events):
    baseline(repo, state_url, events)
    another_change(repo, "recased")
    result = apply(repo, state_url, events.merged(author={"login": "marketer", "id": 101}, merged_by={"login": "Marketer", "id": 101}))
    assert_refused(result, "merged by its own author 'marketer'")
    renamed = events.merged(author={"login": "old-name", "id": 101}, merged_by={"login": "new-name", "id": 101})
    assert_refused(apply(repo, state_url, renamed), "merged by its own author 'old-name'")  # same GitHub user id
    assert serial(repo, state_url) == 1


# -- the rest of the event, with an attacker's eye ----------------------------------------------


def _both(*changes: Callable[[dict], None]) -> Callable[[dict], None]:
    def change(event: dict) -> None:
        for one in changes:
            one(event)

    return change


def _event_key(key: str, value):
    def change(event: dict) -> None:
        event[key] = value

    return change


@pytest.mark.parametrize(
    "change,message",
    [
        (_set("base.ref", "refs/heads/main"), "targets branch 'refs/heads/main'"),
        (_set("base.ref", ["main"]), "targets branch ['main']"),
        (_set("merged", "true"), "closed without being merged"),
        (_set("merged", 1), "closed without being merged"),
        (_set("state", "open"), "its state is 'open', not 'closed'"),
        (_set("merge_commit_sha", None), "does not name its merge commit"),
        (_set("merge_commit_sha", 12345), "does not name its merge commit"),
        (_set("merge_commit_sha", "main"), "does not name its merge commit"),
        (_set("number", True), "does not give the pull request's number"),
        (_set("number", 2**40), "does not give the pull request's number"),
        (_event_key("number", 99), "names two pull requests"),
        (_event_key("action", "edited"), "pull_request 'edited' event"),
        (_set("base.repo.full_name", "attacker/fork"), "names two repositories"),
        (_set("body", "reason\u0000"), "body contains a NUL character"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_a_malformed_merge_event_is_no_approval(repo, state_url, events, change, message):
    record_pass(repo.root, state_url)
    assert_refused(apply(repo, state_url, events.write(change)), message)
    assert serial(repo, state_url) == 0


def test_an_event_for_another_repository_is_no_approval(repo, state_url, events):
    record_pass(repo.root, state_url)
    event = events.merged()
    args = ("apply", "--event", str(event), "--repo", str(repo.root), "--state", state_url)
    other = campaigns(*args, env={"GITHUB_REPOSITORY": "acme/campaigns"})
    assert_refused(other, "is for the repository Codertocat/Hello-World, not acme/campaigns (GITHUB_REPOSITORY)")
    assert serial(repo, state_url) == 0
    same = campaigns(*args, env={"GITHUB_REPOSITORY": "codertocat/hello-world"})  # GitHub names are case-insensitive
    assert same.code == 0, same.err
