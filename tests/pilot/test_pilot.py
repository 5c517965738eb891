"""Pilot tests (``campaigns test``) on both backends: what is rendered and sent, what is recorded,
who the testers are, and how a render failure shows."""

from __future__ import annotations

import json

import pytest
from repos import SmallRepo, apply_now, example_repo

from engine.delivery.providers import MESSAGE_ID_MAX
from engine.errors import UsageError
from engine.pilot import choose_testers, run_pilot_test
from engine.plan.desired import Desired
from engine.state import StateStore
from engine.validation.pipeline import load_repository


def outbox(root, channel: str) -> list[dict]:
    path = root / ".campaigns" / "outbox" / f"{channel}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def pilot(root, url, task_id, testers=()):
    repository = load_repository(root)
    with StateStore.open(url, root) as store:
        return run_pilot_test(repository, store, task_id, testers)


def test_pilot_test_on_the_example_before_any_apply(tmp_path, state_url):
    root = example_repo(tmp_path / "example")
    outcome = pilot(root, state_url, "flash-sale-push")
    assert outcome.passed
    assert outcome.content_digest == Desired(load_repository(root)).task_content_digest("flash-sale-push")
    lines = outbox(root, "push")
    # two site testers x two creatives
    assert {(m["user_id"], m["creative"]) for m in lines} == {
        (tester, creative) for tester in ("u-tester-1", "u-tester-2") for creative in ("flash-a", "flash-b")
    }
    for message in lines:
        assert message["occurrence"] == "test"
        assert message["task"] == "flash-sale-push"
        assert len(message["message_id"]) <= MESSAGE_ID_MAX
        assert "{{" not in message["title"] and "{{" not in message["content"]
    first = next(m for m in lines if m["creative"] == "flash-a")
    assert first["title"] == "Maria, 50% off ends tonight"  # the template's example value
    with StateStore.open(state_url, root) as store:
        assert outcome.content_digest in store.passing_pilot_digests()["flash-sale-push"]
        [run] = store.pilot_tests("flash-sale-push")
        assert run.passed and len(run.results) == 4
        assert store.task_states() == {}  # never applied: nothing to move


def test_every_pilot_test_run_sends_new_message_ids(tmp_path, state_url):
    from cli_runner import campaigns as run_command

    root = example_repo(tmp_path / "example")
    runs = []
    for _ in range(2):
        result = run_command("test", "flash-sale-sms", "--format", "json", "--state", state_url, "--repo", str(root))
        assert result.code == 0, result.err
        runs.append(json.loads(result.out))
    first, again = ([m["message_id"] for m in run["messages"]] for run in runs)
    assert len(set(first)) == len(first) and len(set(again)) == len(again)
    assert not set(first) & set(again)  # a gateway that deduplicates by id gets both tests
    assert all(len(message_id) <= MESSAGE_ID_MAX for message_id in first + again)
    assert runs[0]["run_id"] != runs[1]["run_id"]
    sent = [m["message_id"] for m in outbox(root, "sms")]
    assert sent == first + again
    # the id is derived from the recorded run: the same run, tester, creative and content give it
    from engine.pilot import pilot_message_id

    message = runs[1]["messages"][0]
    assert message["message_id"] == pilot_message_id(
        "flash-sale-sms", runs[1]["content_digest"], message["tester"], message["creative"], runs[1]["run_id"]
    )


def test_a_pilot_test_renders_exactly_as_delivery_does(tmp_path, state_url):
    """One code path (engine.delivery.render): the template's max_length holds for testers as it
    does for users (issue 11 item 1), whatever the examples looked like at validate time."""
    from cli_runner import campaigns as run_command

    from engine.delivery.directory import import_users

    repo = SmallRepo(tmp_path / "repo")
    users = tmp_path / "users.csv"
    users.write_text("user_id,first_name,secret\nu-ana,Ana,s3cr3t\nu-long," + "B" * 90 + ",x\n")
    with StateStore.open(state_url, repo.root) as store:
        import_users(store, users)
    result = run_command("test", "flash-push", "--tester", "u-ana", "--tester", "u-long", "--format", "json",
                         "--state", state_url, "--repo", str(repo.root))
    assert result.code == 1
    by_tester = {m["tester"]: m for m in json.loads(result.out)["messages"]}
    assert by_tester["u-ana"]["passed"] and by_tester["u-ana"]["title"] == "Hi Ana"
    assert not by_tester["u-long"]["passed"]
    assert by_tester["u-long"]["error"].startswith("too-long: title:")
    assert [m["user_id"] for m in outbox(repo.root, "push")] == ["u-ana"]


def test_campaigns_test_warns_when_audience_members_lack_a_printed_attribute(tmp_path, state_url):
    from cli_runner import campaigns as run_command

    from engine.delivery.directory import import_users

    repo = SmallRepo(tmp_path / "repo")  # audience everyone: u-1, u-2, u-tester-1; title prints first_name
    users = tmp_path / "users.csv"
    users.write_text("user_id,first_name\nu-1,Ana\nu-2,\nu-tester-1,Tess\n")
    with StateStore.open(state_url, repo.root) as store:
        import_users(store, users)
    result = run_command("test", "flash-push", "--format", "json", "--state", state_url, "--repo", str(repo.root))
    assert result.code == 0, result.err
    [warning] = json.loads(result.out)["warnings"]
    assert warning["code"] == "missing-attribute"
    assert warning["message"].startswith("1 of 3 members lack first_name, which creative flash-a prints without a default")
    text = run_command("test", "flash-push", "--state", state_url, "--repo", str(repo.root))
    assert "warning: missing-attribute: 1 of 3 members lack first_name" in text.out


def test_a_passing_test_moves_a_draft_task_to_testing(tmp_path, state_url):
    repo = SmallRepo(tmp_path / "repo")
    repo.task("flash-push", status="paused")
    apply_now(repo.root, state_url)
    with StateStore.open(state_url, repo.root) as store:
        assert store.task_states()["flash-push"].status == "draft"
    pilot(repo.root, state_url, "flash-push")
    with StateStore.open(state_url, repo.root) as store:
        assert store.task_states()["flash-push"].status == "testing"


def test_testers_option_then_task_then_site(tmp_path):
    repo = SmallRepo(tmp_path / "repo")
    repository = load_repository(repo.root)
    assert choose_testers(repository, "flash-push") == ["u-tester-1"]  # the site's
    assert choose_testers(repository, "flash-push", ["u-9", "u-8", "u-9"]) == ["u-9", "u-8"]
    text = (repo.root / "campaigns/xmas/flash-push.yaml").read_text() + "testers: [u-task-1]\n"
    repo.write("campaigns/xmas/flash-push.yaml", text)
    assert choose_testers(load_repository(repo.root), "flash-push") == ["u-task-1"]
    with pytest.raises(UsageError, match="not a user id"):
        choose_testers(repository, "flash-push", ["has space"])


def test_no_testers_anywhere_is_a_clear_error(tmp_path, state_url):
    repo = SmallRepo(tmp_path / "repo")
    repo.write("platform.yaml", (repo.root / "platform.yaml").read_text().replace("    testers: [u-tester-1]\n", ""))
    with pytest.raises(UsageError, match="no testers: pass --tester"):
        pilot(repo.root, state_url, "flash-push")


def test_directory_attributes_are_used_and_a_missing_one_fails(tmp_path, state_url):
    from engine.delivery.directory import import_users

    repo = SmallRepo(tmp_path / "repo")
    users = tmp_path / "users.csv"
    users.write_text("user_id,first_name\nu-ana,Ana\nu-nameless,\n")
    with StateStore.open(state_url, repo.root) as store:
        import_users(store, users)
    outcome = pilot(repo.root, state_url, "flash-push", ["u-ana", "u-nameless", "u-tester-1"])
    by_tester = {s.tester: s for s in outcome.sends}
    assert by_tester["u-ana"].passed and by_tester["u-ana"].title == "Hi Ana"
    assert by_tester["u-ana"].profile == "directory"
    # a site tester the directory does not know: the template's examples
    assert by_tester["u-tester-1"].passed and by_tester["u-tester-1"].title == "Hi Maria"
    assert by_tester["u-tester-1"].profile == "examples"
    failed = by_tester["u-nameless"]
    assert not failed.passed and "first_name" in failed.error and "missing" in failed.error
    assert not outcome.passed
    sent = outbox(repo.root, "push")
    assert {m["user_id"] for m in sent} == {"u-ana", "u-tester-1"}  # never a message with a blank hole
    with StateStore.open(state_url, repo.root) as store:
        assert "flash-push" not in store.passing_pilot_digests()
        [run] = store.pilot_tests("flash-push")
        assert not run.passed
        assert any("first_name" in r.detail for r in run.results if not r.passed)
