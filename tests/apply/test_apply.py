"""``apply`` on both backends: all or nothing, approval, blockers, saved plans and staleness."""

from __future__ import annotations

import hashlib

import pytest
from repos import MERGED, MERGED_BY_AUTHOR, UNMERGED, SmallRepo, apply_now, plan_of, record_pass

from engine.apply.applier import ApplyRefused, StalePlan, apply
from engine.apply.approval import Evidence
from engine.plan import planfile
from engine.state import StateStore
from engine.validation.pipeline import load_repository


@pytest.fixture
def repo(tmp_path) -> SmallRepo:
    return SmallRepo(tmp_path / "repo", forbid_self_merge=True)


def state_of(repo, url):
    with StateStore.open(url, repo.root) as store:
        return store.meta(), store.resource_digests(), store.task_states(), store.history()


def run(repo, url, evidence: Evidence, saved=None, **kwargs):
    with StateStore.open(url, repo.root) as store:
        return apply(load_repository(repo.root), store, evidence=evidence, saved=saved, **kwargs)


def test_apply_writes_everything_in_one_serial(repo, state_url):
    record_pass(repo.root, state_url)
    result = apply_now(repo.root, state_url, who="alice", reason="launch it")
    assert result.applied and result.serial == 1
    assert result.message() == "Apply complete! 7 created, 0 updated, 0 deleted; serial 1."
    meta, digests, tasks, history = state_of(repo, state_url)
    assert meta.serial == 1
    plan = plan_of(repo.root, state_url)
    assert set(digests) == {c.address for c in plan.changes}
    assert tasks["flash-push"].status == "running"
    assert tasks["flash-push"].content_digest is not None
    [entry] = history
    assert entry.serial == 1
    assert (entry.approval.kind, entry.approval.approved_by, entry.approval.reason) == ("manual", "alice", "launch it")
    assert entry.summary["create"] == 7
    assert {c["address"] for c in entry.changes} == set(digests)


def test_github_approval_is_recorded_in_the_history(repo, state_url):
    record_pass(repo.root, state_url)
    result = run(repo, state_url, Evidence(event_path=str(MERGED)))
    assert result.applied
    entry = state_of(repo, state_url)[3][-1]
    approval = entry.approval
    assert (approval.pr_number, approval.author, approval.merged_by) == (2, "Codertocat", "octocat")
    assert approval.merge_commit == "c4295bd74fb0f4fda03689c3df3f2803b658fd85"
    assert approval.reason.startswith("Reason to run")


@pytest.mark.parametrize(
    "evidence,reason",
    [
        (Evidence(), "no approval evidence"),
        (Evidence(event_path=str(UNMERGED)), "closed without being merged"),
        (Evidence(event_path=str(MERGED_BY_AUTHOR)), "merged by its own author"),
    ],
)
def test_refused_apply_changes_nothing_and_says_why(repo, state_url, evidence, reason):
    record_pass(repo.root, state_url)
    before = state_of(repo, state_url)
    with pytest.raises(ApplyRefused, match=reason) as refused:
        run(repo, state_url, evidence)
    assert "nothing was changed" in str(refused.value)
    assert any(line.startswith("needs-approval: 7 changes") for line in refused.value.details)
    after = state_of(repo, state_url)
    assert after[0].serial == before[0].serial == 0
    assert after[1] == {} and after[3] == []


def test_refusal_names_every_blocker_and_every_task(repo, state_url):
    repo.task("second")
    repo.template("push-draft", status="under-review")
    repo.creative("draft-c", title="T", content="C", template="push-draft")
    repo.task("third", creatives="draft-c")
    record_pass(repo.root, state_url, "third")
    with pytest.raises(ApplyRefused) as refused:
        run(repo, state_url, Evidence(approved_by="alice", reason="go"))
    message = str(refused.value)
    assert "needs-pilot-test on task.flash-push, task.second" in message
    assert "template-not-approved on task.third" in message
    assert "no approval" not in message  # evidence was given
    details = "\n".join(refused.value.details)
    for task in ("task.flash-push", "task.second"):
        assert f"needs-pilot-test: {task}: no passing pilot test" in details
    assert "template-not-approved: task.third: creative 'draft-c' uses template 'push-draft', which is under-review" in details
    assert state_of(repo, state_url)[0].serial == 0


def test_without_changes_apply_needs_no_approval(repo, state_url):
    record_pass(repo.root, state_url)
    apply_now(repo.root, state_url)
    result = run(repo, state_url, Evidence())
    assert not result.applied and result.serial == 1
    assert "No changes" in result.message()
    assert state_of(repo, state_url)[0].serial == 1


def test_csv_audience_is_stored_as_attachment_in_the_same_apply(repo, state_url):
    record_pass(repo.root, state_url)
    apply_now(repo.root, state_url)
    raw = (repo.root / "audiences/vips.csv").read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    with StateStore.open(state_url, repo.root) as store:
        assert store.attachment(digest) == raw
        assert store.resource("audience.vips").body["csv_digest"] == digest
    repo.write("audiences/vips.csv", "user_id\nu-7\n")
    apply_now(repo.root, state_url)
    with StateStore.open(state_url, repo.root) as store:
        new = hashlib.sha256(b"user_id\nu-7\n").hexdigest()
        assert store.attachment(new) == b"user_id\nu-7\n"
        assert store.resource("audience.vips").body["csv_digest"] == new


def test_a_failure_inside_the_transaction_writes_nothing(repo, state_url, monkeypatch):
    from engine.state.store import Transaction

    record_pass(repo.root, state_url)

    def broken(self, files):
        raise OSError("disk full while storing attachments")

    monkeypatch.setattr(Transaction, "put_attachments", broken)
    with pytest.raises(OSError):
        apply_now(repo.root, state_url)
    meta, digests, tasks, history = state_of(repo, state_url)
    assert (meta.serial, digests, history) == (0, {}, [])
    assert tasks == {}


def test_saved_plan_applies_when_nothing_moved(repo, state_url, tmp_path):
    record_pass(repo.root, state_url)
    path = tmp_path / "plan.json"
    planfile.save(plan_of(repo.root, state_url), path)
    result = apply_now(repo.root, state_url, saved=planfile.load(path))
    assert result.applied and result.serial == 1


def test_pilot_test_recorded_after_planning_counts(repo, state_url, tmp_path):
    path = tmp_path / "plan.json"
    planfile.save(plan_of(repo.root, state_url), path)  # blocked by needs-pilot-test when made
    record_pass(repo.root, state_url)
    assert apply_now(repo.root, state_url, saved=planfile.load(path)).applied


def test_saved_plan_is_stale_after_another_apply(repo, state_url, tmp_path):
    record_pass(repo.root, state_url)
    path = tmp_path / "plan.json"
    planfile.save(plan_of(repo.root, state_url), path)  # made against the empty state
    apply_now(repo.root, state_url)
    with pytest.raises(StalePlan, match="serial 0, and the state is now at serial 1"):
        apply_now(repo.root, state_url, saved=planfile.load(path))
    assert state_of(repo, state_url)[0].serial == 1


def test_saved_plan_is_stale_after_the_repository_changed(repo, state_url, tmp_path):
    record_pass(repo.root, state_url)
    path = tmp_path / "plan.json"
    planfile.save(plan_of(repo.root, state_url), path)
    repo.write("campaigns/xmas/campaign.yaml", "name: Christmas\ndescription: Changed after planning\n")
    with pytest.raises(StalePlan, match="repository's content changed"):
        apply_now(repo.root, state_url, saved=planfile.load(path))
    assert state_of(repo, state_url)[0].serial == 0


def test_saved_plan_of_another_state_is_refused(repo, make_state_url, tmp_path):
    first, second = make_state_url(), make_state_url()
    record_pass(repo.root, first)
    record_pass(repo.root, second)
    path = tmp_path / "plan.json"
    planfile.save(plan_of(repo.root, first), path)
    with pytest.raises(StalePlan, match="another state"):
        apply_now(repo.root, second, saved=planfile.load(path))


def test_deleting_a_task_file_completes_it_in_state_and_history(repo, state_url):
    record_pass(repo.root, state_url)
    apply_now(repo.root, state_url)
    repo.delete_task("flash-push")
    result = apply_now(repo.root, state_url)
    assert result.message() == "Apply complete! 0 created, 0 updated, 1 deleted; serial 2."
    meta, digests, tasks, history = state_of(repo, state_url)
    assert "task.flash-push" in digests
    assert tasks["flash-push"].status == "completed"
    assert history[-1].changes == [
        {"address": "task.flash-push", "action": "delete", "digest": None, "status": {"from": "running", "to": "completed"}}
    ]
