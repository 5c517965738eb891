"""The planner on small repositories, on both state backends: actions, field differences, the
task lifecycle and blockers, and what a plan shows per task."""

from __future__ import annotations

import datetime as dt

import pytest
from repos import SmallRepo, apply_now, example_repo, plan_of, record_fail, record_pass

from engine.config.models import Schedule
from engine.plan.desired import Desired
from engine.schedule.occurrences import preview
from engine.state import StateStore
from engine.validation.pipeline import load_repository

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)


def actions(plan) -> dict[str, str]:
    return {c.address: c.action for c in plan.changes if c.action != "no-op"}


def transition(plan, task_id: str) -> str | None:
    change = plan.change(f"task.{task_id}")
    return change.status.describe() if change and change.status else None


def codes(plan, address: str) -> list[str]:
    change = plan.change(address)
    return change.blocker_codes() if change else []


@pytest.fixture
def repo(tmp_path) -> SmallRepo:
    return SmallRepo(tmp_path / "repo")


def applied(repo: SmallRepo, url: str) -> None:
    """Record pilot tests of every task and apply the repository as it is."""
    record_pass(repo.root, url)
    result = apply_now(repo.root, url)
    assert result.applied


def test_empty_state_creates_everything_with_blockers(repo, state_url):
    repo.task("later", status="paused")
    plan = plan_of(repo.root, state_url, now=NOW)
    expected = {
        "platform",
        "template.push-promo",
        "audience.everyone",
        "audience.vips",
        "creative.flash-a",
        "campaign.xmas",
        "task.flash-push",
        "task.later",
    }
    assert actions(plan) == dict.fromkeys(expected, "create")
    assert plan.summary() == {"create": 8, "update": 0, "delete": 0, "no-op": 0}
    assert plan.serial == 0 and plan.lineage
    assert transition(plan, "flash-push") == "(new) -> running"
    assert codes(plan, "task.flash-push") == ["needs-pilot-test", "needs-approval"]
    assert transition(plan, "later") == "(new) -> draft"
    assert codes(plan, "task.later") == ["needs-approval"]
    assert all("needs-approval" in c.blocker_codes() for c in plan.actionable)


def test_nothing_to_do_after_apply(repo, state_url):
    applied(repo, state_url)
    plan = plan_of(repo.root, state_url)
    assert not plan.has_changes
    assert plan.serial == 1
    assert {c.action for c in plan.changes} == {"no-op"}
    assert plan.change("task.flash-push").status.describe() == "running -> running"


def test_changed_creative_shows_its_field_and_needs_a_new_pilot_test(repo, state_url):
    applied(repo, state_url)
    repo.creative("flash-a", title="Hello {{ user.first_name }}", content="Half price today")
    plan = plan_of(repo.root, state_url)
    assert actions(plan) == {"creative.flash-a": "update", "task.flash-push": "update"}
    creative = plan.change("creative.flash-a")
    assert [(d.path, d.kind, d.old, d.new) for d in creative.diffs] == [
        ("title", "changed", "Hi {{ user.first_name }}", "Hello {{ user.first_name }}")
    ]
    task = plan.change("task.flash-push")
    assert task.status.describe() == "running -> running"
    assert task.diffs == []
    assert "creative.flash-a" in " ".join(task.notes)
    assert codes(plan, "task.flash-push") == ["needs-pilot-test", "needs-approval"]
    record_pass(repo.root, state_url, "flash-push")
    assert codes(plan_of(repo.root, state_url), "task.flash-push") == ["needs-approval"]


def test_a_failed_pilot_test_does_not_count(repo, state_url):
    record_fail(repo.root, state_url, "flash-push")
    assert "needs-pilot-test" in codes(plan_of(repo.root, state_url), "task.flash-push")


def test_field_paths_of_a_schedule_change(repo, state_url):
    applied(repo, state_url)
    repo.task("flash-push", window="08:30")
    change = plan_of(repo.root, state_url).change("task.flash-push")
    assert change.action == "update"
    assert [(d.path, d.old, d.new) for d in change.diffs] == [("schedule.windows[0].start", "09:00", "08:30")]
    assert "needs-pilot-test" in change.blocker_codes()  # the task itself is content


def test_added_and_removed_fields_and_list_items(repo, state_url):
    applied(repo, state_url)
    text = (repo.root / "campaigns/xmas/flash-push.yaml").read_text()
    text = text.replace("audiences: [everyone]", "audiences: [everyone, vips]") + "description: New field\n"
    repo.write("campaigns/xmas/flash-push.yaml", text)
    diffs = {(d.path, d.kind) for d in plan_of(repo.root, state_url).change("task.flash-push").diffs}
    assert diffs == {("audiences[1]", "added"), ("description", "added")}


def test_pause_and_resume_need_no_new_pilot_test(repo, state_url):
    applied(repo, state_url)
    repo.task("flash-push", status="paused")
    plan = plan_of(repo.root, state_url)
    assert transition(plan, "flash-push") == "running -> paused"
    assert codes(plan, "task.flash-push") == ["needs-approval"]
    assert [d.path for d in plan.change("task.flash-push").diffs] == ["status"]
    apply_now(repo.root, state_url)
    repo.task("flash-push", status="active")
    plan = plan_of(repo.root, state_url)
    assert transition(plan, "flash-push") == "paused -> running"
    assert codes(plan, "task.flash-push") == ["needs-approval"]


def test_resume_with_changed_content_needs_a_pilot_test(repo, state_url):
    applied(repo, state_url)
    repo.task("flash-push", status="paused")
    apply_now(repo.root, state_url)
    repo.task("flash-push", status="active", name="Renamed while paused")
    plan = plan_of(repo.root, state_url)
    assert transition(plan, "flash-push") == "paused -> running"
    assert "needs-pilot-test" in codes(plan, "task.flash-push")


def test_paused_task_that_never_ran_is_draft_then_testing(repo, state_url):
    repo.task("flash-push", status="paused")
    assert transition(plan_of(repo.root, state_url), "flash-push") == "(new) -> draft"
    record_pass(repo.root, state_url, "flash-push")
    assert transition(plan_of(repo.root, state_url), "flash-push") == "(new) -> testing"


def test_draft_moves_to_testing_by_a_pilot_test_then_to_running(repo, state_url):
    repo.task("flash-push", status="paused")
    apply_now(repo.root, state_url)
    with StateStore.open(state_url, repo.root) as store:
        assert store.task_states()["flash-push"].status == "draft"
    record_pass(repo.root, state_url, "flash-push")  # record_pilot_test moves draft -> testing
    with StateStore.open(state_url, repo.root) as store:
        assert store.task_states()["flash-push"].status == "testing"
    assert not plan_of(repo.root, state_url).has_changes  # testing stays testing
    repo.task("flash-push", status="active")
    plan = plan_of(repo.root, state_url)
    assert transition(plan, "flash-push") == "testing -> running"
    assert codes(plan, "task.flash-push") == ["needs-approval"]


def test_editing_a_tested_paused_task_sends_it_back_to_draft(repo, state_url):
    repo.task("flash-push", status="paused")
    apply_now(repo.root, state_url)
    record_pass(repo.root, state_url, "flash-push")
    repo.task("flash-push", status="paused", name="Edited after the test")
    assert transition(plan_of(repo.root, state_url), "flash-push") == "testing -> draft"


def test_deleting_a_task_completes_it_and_keeps_it(repo, state_url):
    applied(repo, state_url)
    repo.delete_task("flash-push")
    plan = plan_of(repo.root, state_url)
    change = plan.change("task.flash-push")
    assert change.action == "delete"
    assert change.status.describe() == "running -> completed"
    assert codes(plan, "task.flash-push") == ["needs-approval"]
    assert plan.summary()["delete"] == 1
    apply_now(repo.root, state_url)
    with StateStore.open(state_url, repo.root) as store:
        assert store.task_states()["flash-push"].status == "completed"
        assert store.resource("task.flash-push") is not None  # kept
        last = store.history()[-1]
    assert {"address": "task.flash-push", "action": "delete"}.items() <= last.changes[0].items()
    plan = plan_of(repo.root, state_url)
    assert not plan.has_changes
    assert plan.change("task.flash-push").status.describe() == "completed -> completed"


def test_a_completed_task_coming_back_is_planned_like_a_new_one(repo, state_url):
    applied(repo, state_url)
    repo.delete_task("flash-push")
    apply_now(repo.root, state_url)
    repo.task("flash-push")
    plan = plan_of(repo.root, state_url)
    assert transition(plan, "flash-push") == "completed -> running"
    assert plan.change("task.flash-push").action == "update"
    # its old pilot test was of the same content: it counts
    assert codes(plan, "task.flash-push") == ["needs-approval"]
    repo.task("flash-push", name="Back with new content")
    assert "needs-pilot-test" in codes(plan_of(repo.root, state_url), "task.flash-push")


def test_deleting_other_resources_removes_them(repo, state_url):
    repo.creative("flash-b", title="B", content="Second creative")
    repo.task("flash-push", creatives="flash-a, flash-b")
    applied(repo, state_url)
    repo.task("flash-push", creatives="flash-a")
    repo.delete("creatives/flash-b.yaml")
    plan = plan_of(repo.root, state_url)
    assert actions(plan) == {"creative.flash-b": "delete", "task.flash-push": "update"}
    record_pass(repo.root, state_url, "flash-push")
    apply_now(repo.root, state_url)
    with StateStore.open(state_url, repo.root) as store:
        assert store.resource("creative.flash-b") is None


def test_template_not_approved_blocks_a_task_that_would_run(repo, state_url):
    repo.template("push-draft", status="under-review")
    repo.creative("draft-c", title="T", content="C", template="push-draft")
    repo.task("pending", creatives="draft-c")
    repo.task("parked", creatives="draft-c", status="paused")
    record_pass(repo.root, state_url)
    plan = plan_of(repo.root, state_url)
    assert codes(plan, "task.pending") == ["template-not-approved", "needs-approval"]
    assert "under-review" in plan.change("task.pending").blockers[0].message
    assert codes(plan, "task.parked") == ["needs-approval"]
    assert codes(plan, "task.flash-push") == ["needs-approval"]


def test_template_change_reaches_every_task_using_it(repo, state_url):
    repo.task("second")
    applied(repo, state_url)
    repo.write("templates/push-promo.yaml", (repo.root / "templates/push-promo.yaml").read_text().replace("Promo push", "Promotion push"))
    plan = plan_of(repo.root, state_url)
    assert actions(plan) == {"template.push-promo": "update", "task.flash-push": "update", "task.second": "update"}
    assert codes(plan, "task.second") == ["needs-pilot-test", "needs-approval"]


def test_audience_changes_need_no_pilot_test(repo, state_url):
    applied(repo, state_url)
    repo.write("audiences/everyone.yaml", "name: Everyone\nsite: ph\nsource:\n  users: [u-1, u-2, u-3]\n")
    plan = plan_of(repo.root, state_url)
    assert actions(plan) == {"audience.everyone": "update"}
    assert [d.path for d in plan.change("audience.everyone").diffs] == ["source.users[2]"]


def test_csv_audience_body_carries_the_file_digest(repo, state_url):
    import hashlib

    plan = plan_of(repo.root, state_url)
    change = plan.change("audience.vips")
    raw = (repo.root / "audiences/vips.csv").read_bytes()
    assert change.body["csv_digest"] == hashlib.sha256(raw).hexdigest()
    assert change.body["csv_path"] == "audiences/vips.csv"
    assert change.attachments == [{"digest": hashlib.sha256(raw).hexdigest(), "path": "audiences/vips.csv"}]
    applied(repo, state_url)
    repo.write("audiences/vips.csv", "user_id,first_name\nu-1,Ana\n")
    plan = plan_of(repo.root, state_url)
    assert actions(plan) == {"audience.vips": "update"}
    assert [d.path for d in plan.change("audience.vips").diffs] == ["csv_digest"]


def test_tasks_show_their_next_five_occurrences_and_total(repo, state_url):
    repo.task("one-off", recurrence="{type: one_time}", start="2027-02-01", finish="2027-02-03")
    plan = plan_of(repo.root, state_url, now=NOW)
    repository = load_repository(repo.root)
    for task_id in ("flash-push", "one-off"):
        shown = plan.change(f"task.{task_id}").schedule
        expected = preview(Schedule.model_validate(repository.tasks[task_id].data["schedule"]), "Asia/Manila", NOW, 5)
        assert shown.total == expected.total
        assert [o.key for o in shown.upcoming] == [o.key for o in expected.upcoming]
        assert [o.start for o in shown.upcoming] == [o.start.isoformat() for o in expected.upcoming]
    assert len(plan.change("task.flash-push").schedule.upcoming) == 5
    assert [o.key for o in plan.change("task.one-off").schedule.upcoming] == ["once"]
    later = plan_of(repo.root, state_url, now=dt.datetime(2027, 3, 30, tzinfo=dt.timezone.utc))
    assert len(later.change("task.flash-push").schedule.upcoming) < 5  # only what is still to come


def test_no_previews_or_diffs_for_unchanged_resources(repo, state_url):
    applied(repo, state_url)
    plan = plan_of(repo.root, state_url)
    assert all(c.schedule is None and not c.diffs and c.body is None for c in plan.changes)


def test_shipped_example_plans_every_resource(tmp_path, state_url):
    root = example_repo(tmp_path / "example")
    repository = load_repository(root)
    plan = plan_of(root, state_url, now=NOW)
    assert plan.summary()["create"] == sum(1 for _ in repository.resources())
    assert transition(plan, "monthly-rewards-mp") == "(new) -> draft"
    for task_id in ("flash-sale-push", "flash-sale-sms", "weekly-points-inbox"):
        assert transition(plan, task_id) == "(new) -> running"
        assert codes(plan, f"task.{task_id}") == ["needs-pilot-test", "needs-approval"]
    record_pass(root, state_url)
    apply_now(root, state_url)
    assert not plan_of(root, state_url).has_changes


def test_content_digest_ignores_status_but_not_creatives_or_templates(repo):
    digest = lambda: Desired(load_repository(repo.root)).task_content_digest("flash-push")  # noqa: E731
    first = digest()
    repo.task("flash-push", status="paused")
    assert digest() == first
    repo.write("audiences/everyone.yaml", "name: All\nsite: ph\nsource:\n  users: [u-1]\n")
    assert digest() == first  # audiences are not content
    repo.creative("flash-a", title="Other", content="Half price today")
    second = digest()
    assert second != first
    repo.write("templates/push-promo.yaml", (repo.root / "templates/push-promo.yaml").read_text().replace("Promo push", "X"))
    assert digest() != second
