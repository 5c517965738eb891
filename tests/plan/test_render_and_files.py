"""Rendering (text, Markdown, JSON) and saved plan files (checksum, truncation, round trip)."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from repos import SmallRepo, apply_now, plan_of, record_pass

from engine.plan import model, planfile, render
from engine.plan.model import (
    Blocker,
    Change,
    FieldDiff,
    OccurrenceView,
    Plan,
    SchedulePreview,
    StatusChange,
)
from engine.plan.planfile import PlanFileError

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def repo(tmp_path) -> SmallRepo:
    return SmallRepo(tmp_path / "repo")


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/state/state.db"


def huge_plan(tasks: int) -> Plan:
    changes = []
    for index in range(tasks):
        changes.append(
            Change(
                f"task.task-{index:05d}",
                "task",
                f"task-{index:05d}",
                "create" if index % 3 else "update",
                before_digest=None if index % 3 else "a" * 64,
                after_digest="b" * 64,
                body={"name": f"Task {index}", "schedule": {"windows": [{"start": "09:00", "finish": "12:00"}]}},
                diffs=[FieldDiff("schedule.windows[0].start", "changed", "08:00", "09:00")] if index % 3 == 0 else [],
                status=StatusChange(None if index % 3 else "running", "running"),
                blockers=[Blocker("needs-pilot-test", "no passing pilot test"), Blocker("needs-approval", "approve")],
                schedule=SchedulePreview(
                    "Asia/Manila",
                    tuple(OccurrenceView(f"2027-01-0{d}", f"2027-01-0{d}T09:00:00+08:00", f"2027-01-0{d}T12:00:00+08:00") for d in range(1, 6)),
                    90,
                ),
            )
        )
    return Plan("lineage-1", 4, "c" * 64, "2026-12-01T00:00:00Z", "sqlite:///x", changes)


def test_text_markers_summary_line_and_no_colour_by_default(repo, url):
    record_pass(repo.root, url)
    apply_now(repo.root, url)
    repo.creative("flash-b", title="New", content="Another")
    repo.creative("flash-a", title="Changed {{ user.first_name }}", content="Half price today")
    repo.delete("audiences/vips.yaml")
    repo.delete("audiences/vips.csv")
    text = render.as_text(plan_of(repo.root, url))
    assert "  + creative.flash-b" in text
    assert "  ~ creative.flash-a" in text
    assert "  - audience.vips" in text
    assert '~ title: "Hi {{ user.first_name }}" -> "Changed {{ user.first_name }}"' in text
    assert "\nPlan: 1 to create, 2 to update, 1 to delete.\n" in text
    assert not ANSI.search(text)
    assert ANSI.search(render.as_text(plan_of(repo.root, url), color=True))


def test_text_when_nothing_to_do(repo, url):
    record_pass(repo.root, url)
    apply_now(repo.root, url)
    text = render.as_text(plan_of(repo.root, url))
    assert "No changes." in text
    assert "Plan:" not in text


def test_markdown_starts_with_the_marker_and_has_a_table_and_details(repo, url):
    document = render.as_markdown(plan_of(repo.root, url))
    lines = document.splitlines()
    assert lines[0] == "<!-- campaigns-plan -->"
    assert "| | Address | Action | Status | Blockers |" in document
    assert document.count("<details>") == document.count("</details>") == 7
    assert "`task.flash-push`" in document and "needs-pilot-test" in document
    assert "left out" not in document


def test_markdown_of_a_huge_plan_stays_under_the_comment_limit_and_says_what_it_left_out():
    plan = huge_plan(3000)
    document = render.as_markdown(plan)
    assert len(document) <= render.GITHUB_COMMENT_LIMIT
    assert document.splitlines()[0] == render.MARKDOWN_MARKER
    shown = document.count("<details>")
    assert 0 < shown < 3000
    assert document.count("<details>") == document.count("</details>")
    note = document.strip().splitlines()[-1]
    assert f"{3000 - shown:,} were left out" in note
    assert "65,536" in note
    assert "Plan: 2000 to create, 1000 to update, 0 to delete." in document


def test_markdown_limit_is_respected_for_any_budget():
    plan = huge_plan(200)
    for limit in (5_000, 20_000, 65_536):
        assert len(render.as_markdown(plan, limit=limit)) <= limit


def test_markdown_fences_survive_backticks_in_values():
    change = Change(
        "creative.x", "creative", "x", "update", "a" * 64, "b" * 64,
        diffs=[FieldDiff("content", "changed", "plain", "with ``` fence")],
    )
    document = render.as_markdown(Plan("l", 1, "d" * 64, "2026-01-01T00:00:00Z", "s", [change]))
    assert "````diff" in document


def test_json_shape(repo, url):
    before_the_first_occurrence = dt.datetime(2026, 12, 15, tzinfo=dt.timezone.utc)  # flash-push starts 2027-01-04
    document = json.loads(render.as_json(plan_of(repo.root, url, now=before_the_first_occurrence)))
    assert document["format_version"] == model.FORMAT_VERSION
    assert document["serial"] == 0 and isinstance(document["lineage"], str)
    assert document["summary"] == {"create": 7, "update": 0, "delete": 0, "no_op": 0, "changes": 7}
    task = next(c for c in document["changes"] if c["address"] == "task.flash-push")
    assert task["action"] == "create"
    assert task["status"] == {"from": None, "to": "running"}
    assert [b["code"] for b in task["blockers"]] == ["needs-pilot-test", "needs-approval"]
    assert task["body"]["campaign"] == "xmas"
    assert len(task["schedule"]["next"]) == 5 and task["schedule"]["total"] > 5
    assert document["blockers"]["needs-pilot-test"] == ["task.flash-push"]
    assert document["checksum"] == planfile.checksum(document)


def test_json_lists_unchanged_resources_as_no_ops(repo, url):
    record_pass(repo.root, url)
    apply_now(repo.root, url)
    document = json.loads(render.as_json(plan_of(repo.root, url)))
    assert document["summary"]["changes"] == 0
    assert {c["action"] for c in document["changes"]} == {"no-op"}
    task = next(c for c in document["changes"] if c["address"] == "task.flash-push")
    assert task["status"] == {"from": "running", "to": "running"}


def test_saved_plan_round_trip(repo, url, tmp_path):
    plan = plan_of(repo.root, url)
    path = tmp_path / "plan.json"
    planfile.save(plan, path)
    loaded = planfile.load(path)
    assert loaded.fingerprint() == plan.fingerprint()
    assert (loaded.lineage, loaded.serial, loaded.repository_digest) == (plan.lineage, plan.serial, plan.repository_digest)
    assert [c.to_json() for c in loaded.changes] == [c.to_json() for c in plan.changes]


def test_edited_plan_is_refused(repo, url, tmp_path):
    path = tmp_path / "plan.json"
    planfile.save(plan_of(repo.root, url), path)
    document = json.loads(path.read_text())
    document["changes"][0]["action"] = "delete"
    path.write_text(json.dumps(document))
    with pytest.raises(PlanFileError, match="modified after it was saved"):
        planfile.load(path)


def test_truncated_plan_is_refused(repo, url, tmp_path):
    path = tmp_path / "plan.json"
    planfile.save(plan_of(repo.root, url), path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(PlanFileError, match="truncated"):
        planfile.load(path)


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "empty"),
        (b"\xff\xfe\x00", "not text"),
        (b'{"hello": 1}', "not a saved campaigns plan"),
        (b'{"kind": "campaigns-plan", "format_version": 99}', "format_version 99"),
        (b"{\"a\": [1, 2,, 3]}", "not valid JSON"),
    ],
)
def test_other_bad_plan_files(tmp_path, content, message):
    path = tmp_path / "plan.json"
    path.write_bytes(content)
    with pytest.raises(PlanFileError, match=message):
        planfile.load(path)
    with pytest.raises(PlanFileError, match="no plan file"):
        planfile.load(tmp_path / "missing.json")
