"""Schema checking costs time linear in the document, and no message embeds an unbounded value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bounded_run import campaigns_bounded
from repos import EXAMPLE_LIVE_NOW, example_repo, write

from engine.config.schemas import repeated_items, validator_for
from engine.validation.schema_check import MESSAGE_MAX, bounded, schema_findings

CAMPAIGN = "campaigns/december-flash-sale/campaign.yaml"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return example_repo(tmp_path / "repo")


def validate_json(repo: Path, **limits) -> list[dict]:
    run = campaigns_bounded("validate", "--now", EXAMPLE_LIVE_NOW, "--repo", str(repo), "--format", "json", "--no-cache", **limits)
    assert not run.crashed and run.code == 1, run.err[-2000:]
    return json.loads(run.out)["problems"]


def test_long_texts_and_keys_are_quoted_short_in_messages(repo):
    text = "A" * 400_000
    write(
        repo,
        CAMPAIGN,
        f"name: [{text}, {text[:1000]}]\ndescription: {{a: {text[:50_000]}}}\n? {'K' * 400_000}\n: 1\n",
    )
    problems = validate_json(repo, seconds=60, memory=600 << 20)
    assert {problem["code"] for problem in problems} == {"schema"}
    assert any("unknown field 'KKK" in problem["message"] for problem in problems)
    assert all(len(problem["message"]) <= MESSAGE_MAX for problem in problems)


def test_jsonschema_never_builds_a_long_message_from_a_bounded_document():
    """jsonschema writes repr(instance) into each error eagerly; the bounded view keeps it short."""
    text = "B" * 200_000
    condition = {"attr": "a", "eq": [text] * 50, "ne": {"x": text, "y": [text, {"z": text}]}}
    document = {"name": "x", "site": "ph", "source": {"where": {"any": [{"all": [condition] * 200}]}, "csv": text}}
    errors = list(validator_for("audience").iter_errors(bounded(document)))
    assert errors
    stack = list(errors)
    while stack:
        error = stack.pop()
        assert len(error.message) < 2000, error.message[:300]
        stack.extend(error.context or ())
    assert all(len(finding.message) <= MESSAGE_MAX for finding in schema_findings("audience", document))


def test_the_bounded_view_is_equal_to_the_document():
    document = {"a": ["x" * 500, {"b": "y" * 70, "c": [1, 2.5, True, None]}], "d" * 80: "short"}
    assert bounded(document) == document
    assert json.loads(json.dumps(bounded(document))) == document


def test_unique_items_of_20000_mappings_are_checked_in_linear_time(repo):
    """jsonschema compares every pair of unsortable items: minutes for this list before."""
    text = (repo / "platform.yaml").read_text()
    channels = ", ".join(f"{{a: {i}}}" for i in range(20_000))
    write(repo, "platform.yaml", text.replace("channels: [push, sms, inbox-ewallet, inbox-miniprogram]", f"channels: [{channels}]"))
    problems = validate_json(repo, seconds=180)
    assert {(problem["file"], problem["code"]) for problem in problems} == {("platform.yaml", "schema")}


def test_repeated_items_are_still_named(repo):
    text = (repo / "platform.yaml").read_text()
    write(repo, "platform.yaml", text.replace("channels: [push, sms,", "channels: [push, sms, push,"))
    [problem] = [p for p in validate_json(repo) if p["file"] == "platform.yaml"]
    assert "'push' more than once" in problem["message"]


def test_uniqueness_follows_json_schema_equality():
    repeated = repeated_items
    assert repeated([1, 1.0]) == [1.0]  # the same number
    assert repeated([1, True, 0, False]) == []  # booleans are not numbers
    assert repeated([{"a": [1, {"b": 2}]}, {"a": [1, {"b": 2.0}]}]) == [{"a": [1, {"b": 2.0}]}]
    assert repeated([[1, 2], [2, 1]]) == []  # order matters in a list
