"""``.inf``, ``.nan`` and integers no field needs (beyond ±2**53) are ``schema`` problems in every
numeric field, so ``plan`` never meets them (it used to crash on them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import campaigns
from repos import example_repo, write

HOSTILE = {"inf": ".inf", "-inf": "-.inf", "nan": ".nan", "400 digits": "1" * 400, "2**53+1": str(2**53 + 1)}

# (file, text to replace, replacement with {value}): every numeric field of the models
NUMERIC_FIELDS = {
    "where operand": ("audiences/high-points-ph.yaml", "{attr: points, gte: 1000}", "{attr: points, gte: {value}}"),
    "where eq": ("audiences/high-points-ph.yaml", "{attr: segment, eq: vip}", "{attr: segment, eq: {value}}"),
    "where in": ("audiences/high-points-ph.yaml", "in: [Manila,", "in: [{value}, Manila,"),
    "template example": ("templates/push-promo.yaml", "variables:\n", "variables:\n  bonus: {example: {value}}\n"),
    "max_length": ("templates/push-promo.yaml", "max_length: 50}", "max_length: {value}}"),
    "max_per_user_per_day": ("platform.yaml", "max_per_user_per_day: 3", "max_per_user_per_day: {value}"),
    "rate_per_second": ("platform.yaml", "push: 500,", "push: {value},"),
    "poll_interval": ("platform.yaml", "poll_interval: 30", "poll_interval: {value}"),
    "batch_size": ("platform.yaml", "batch_size: 1000", "batch_size: {value}"),
    "daily every": ("campaigns/december-flash-sale/flash-sale-push.yaml", "every: 2}", "every: {value}}"),
    "monthly day": ("campaigns/rewards-2027/monthly-rewards-mp.yaml", "day: last", "day: {value}"),
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return example_repo(tmp_path / "repo")


def put(repo: Path, field: str, value: str) -> tuple[str, int]:
    path, old, new = NUMERIC_FIELDS[field]
    text = (repo / path).read_text()
    assert old in text, (path, old)
    write(repo, path, text.replace(old, new.replace("{value}", value), 1))
    return path, text[: text.index(old)].count("\n") + 1 + (1 if field == "template example" else 0)


def test_the_fields_above_exist_in_the_example(repo):
    for field in NUMERIC_FIELDS:
        path, old, _ = NUMERIC_FIELDS[field]
        assert old in (repo / path).read_text(), field


@pytest.mark.parametrize("field", sorted(NUMERIC_FIELDS))
@pytest.mark.parametrize("label", sorted(HOSTILE))
def test_a_non_finite_or_huge_number_is_a_schema_problem_at_its_line(repo, field, label):
    path, line = put(repo, field, HOSTILE[label])
    run = campaigns("validate", "--repo", str(repo), "--format", "json", "--no-cache")
    assert "Internal error" not in run.err and run.code == 1, run.out + run.err
    problems = json.loads(run.out)["problems"]
    assert any(p["file"] == path and p["line"] == line and p["code"] == "schema" for p in problems), problems


@pytest.mark.parametrize("field", ["where operand", "template example"])
@pytest.mark.parametrize("label", ["inf", "nan", "400 digits"])
def test_plan_refuses_them_instead_of_crashing(repo, tmp_path, field, label):
    put(repo, field, HOSTILE[label])
    run = campaigns("plan", "--repo", str(repo), "--state", f"sqlite:///{tmp_path / 'state.db'}", "--no-color")
    assert "Internal error" not in run.out + run.err
    assert run.code == 1 and "schema" in run.out + run.err


def test_ordinary_numbers_still_validate(repo):
    put(repo, "where operand", "-12.5")
    put(repo, "template example", str(2**53))
    run = campaigns("validate", "--repo", str(repo), "--no-cache")
    assert run.code == 0, run.out
