"""The no-op fast path answers exactly what the full planner answers, and only when it may."""

from __future__ import annotations

import os

import pytest
from repos import SmallRepo, apply_now, record_pass

from engine.plan import fastpath
from engine.plan.planner import compute_plan
from engine.plan.source import LocalSource
from engine.state import StateStore
from engine.validation.pipeline import load_repository, read_files


def same_size_same_time_edit(repo) -> None:
    """Change a file's bytes but keep its size and modification time (what a stat check misses)."""
    path = repo.root / "templates/push-promo.yaml"
    before = path.stat()
    text = path.read_text()
    edited = text.replace("Promo", "Prumo", 1) if "Promo" in text else text.replace("a", "b", 1)
    assert len(edited) == len(text) and edited != text
    path.write_text(edited)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


@pytest.fixture
def settled(tmp_path, state_url):
    repo = SmallRepo(tmp_path / "repo")
    repo.task("parked", status="paused")
    record_pass(repo.root, state_url)  # parked: (new) -> testing
    apply_now(repo.root, state_url)
    return repo


def fast(repo, url):
    with StateStore.open(url, repo.root) as store:
        return fastpath.noop_plan(fastpath.remembered(read_files(repo.root)), LocalSource(store))


def full(repo, url):
    with StateStore.open(url, repo.root) as store:
        return compute_plan(load_repository(repo.root), store)


def comparable(plan) -> dict:
    document = plan.to_json()
    document.pop("created_at")
    return document


def test_same_answer_as_the_full_planner(settled, state_url):
    quick = fast(settled, state_url)
    assert quick is not None
    assert comparable(quick) == comparable(full(settled, state_url))
    assert not quick.has_changes


@pytest.mark.parametrize(
    "change",
    [
        lambda repo: repo.creative("flash-a", title="Other", content="Half price today"),
        lambda repo: repo.write("campaigns/xmas/new-task.yaml", (repo.root / "campaigns/xmas/flash-push.yaml").read_text()),
        lambda repo: repo.delete("campaigns/xmas/parked.yaml"),
        lambda repo: repo.write("audiences/vips.csv", "user_id\nu-1\n"),
        same_size_same_time_edit,
    ],
)
def test_any_file_change_takes_the_full_path(settled, state_url, change):
    change(settled)
    assert fast(settled, state_url) is None


def test_a_state_that_moved_takes_the_full_path(settled, state_url, tmp_path):
    with StateStore.open(state_url, settled.root) as store:
        meta = store.meta()
        with store.transaction(meta.lineage, meta.serial) as tx:
            tx.delete_resources(["creative.flash-a"])
            tx.append_history(approval=None, summary={}, changes=[])
    assert fast(settled, state_url) is None
    assert full(settled, state_url).change("creative.flash-a").action == "create"


def test_a_task_status_that_moved_takes_the_full_path(settled, state_url):
    from engine.state import TaskStateWrite

    with StateStore.open(state_url, settled.root) as store:
        meta = store.meta()
        with store.transaction(meta.lineage, meta.serial) as tx:
            tx.set_task_states([TaskStateWrite("flash-push", "paused", None)])
            tx.append_history(approval=None, summary={}, changes=[])
    assert fast(settled, state_url) is None


def test_touching_a_file_without_changing_it_keeps_the_fast_path(settled, state_url):
    os.utime(settled.root / "templates/push-promo.yaml")  # same bytes, new time: content decides
    assert fast(settled, state_url) is not None


def test_a_file_changed_after_planning_is_not_remembered(tmp_path, state_url):
    repo = SmallRepo(tmp_path / "repo")
    record_pass(repo.root, state_url)
    apply_now(repo.root, state_url)
    fastpath.forget(repo.root)
    repository = load_repository(repo.root)  # what is planned ...
    repo.creative("flash-a", title="Edited meanwhile", content="Half price today")  # ... is no longer on disk
    with StateStore.open(state_url, repo.root) as store:
        assert not compute_plan(repository, store).has_changes  # the loaded content matches the state
    assert fast(repo, state_url) is None


def test_a_draft_task_is_left_to_the_full_planner(tmp_path, state_url):
    repo = SmallRepo(tmp_path / "repo")
    repo.task("parked", status="paused")
    record_pass(repo.root, state_url, "flash-push")
    apply_now(repo.root, state_url)
    assert fast(repo, state_url) is None  # draft may become testing: only the planner knows
    assert not full(repo, state_url).has_changes


def test_an_attribute_dropped_from_the_directory_is_not_hidden_by_the_fast_path(tmp_path, state_url):
    """The fast path skips validation; it must not answer "No changes" for a repository that no
    longer validates against the user directory (an audience rule names a dropped attribute)."""
    from cli_runner import campaigns as cli

    repo = SmallRepo(tmp_path / "repo")
    repo.write("audiences/manila.yaml", "name: Manila\nsite: ph\nsource:\n  where:\n    all:\n      - {attr: city, eq: Manila}\n")
    repo.task("flash-push", audiences="manila")
    users = tmp_path / "users.csv"
    users.write_text("user_id,first_name,city\nu-1,Ana,Manila\nu-tester-1,Tess,Cebu\n")
    common = ("--repo", str(repo.root), "--state", state_url)
    assert cli("users", "import", str(users), *common).code == 0
    record_pass(repo.root, state_url)
    assert cli("apply", "--approved-by", "lead", "--reason", "go", *common).code == 0
    settled = cli("plan", *common)
    assert settled.code == 0 and "No changes." in settled.out

    users.write_text("user_id,first_name\nu-1,Ana\nu-tester-1,Tess\n")
    assert cli("users", "import", str(users), "--replace", *common).code == 0
    planned = cli("plan", *common)
    assert planned.code == 1, planned.out
    assert "unknown-attribute" in planned.err and "No changes." not in planned.out
