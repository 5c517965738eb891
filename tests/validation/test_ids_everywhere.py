"""Every id is checked wherever it is written (``invalid-id``), and no id ends with a newline.

Site keys, mini programs, references between files, file and folder names follow the id pattern.
Testers (and an audience's ``users``) are user ids, as ``users import`` takes them: 1 to 32
characters, no whitespace, no control characters.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import campaigns
from repos import example_repo, write

TASK = "campaigns/december-flash-sale/flash-sale-push.yaml"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return example_repo(tmp_path / "repo")


def validate(repo: Path) -> tuple[int, list[dict]]:
    run = campaigns("validate", "--repo", str(repo), "--format", "json", "--no-cache")
    assert "Traceback" not in run.err and "Internal error" not in run.err, run.err
    return run.code, json.loads(run.out)["problems"]


def replace(repo: Path, path: str, old: str, new: str) -> int:
    """Replace text in a file; returns the 1-based line of the replacement."""
    text = (repo / path).read_text()
    assert old in text, (path, old)
    write(repo, path, text.replace(old, new, 1))
    return text[: text.index(old)].count("\n") + 1


def invalid_ids(problems: list[dict]) -> list[tuple[str, int, int]]:
    return [(p["file"], p["line"], p["column"]) for p in problems if p["code"] == "invalid-id"]


def test_a_site_key_with_a_space_is_an_invalid_id_at_the_key(repo):
    line = replace(repo, "platform.yaml", "\n  ph:\n", "\n  PH Site:\n") + 1
    code, problems = validate(repo)
    assert code == 1
    assert ("platform.yaml", line, 3) in invalid_ids(problems)
    assert any("'PH Site' is not an id" in p["message"] for p in problems)


def test_a_mini_program_name_with_spaces_is_an_invalid_id(repo):
    line = replace(repo, "platform.yaml", "mini_programs: [shop, rewards]", "mini_programs: [shop, my rewards]")
    code, problems = validate(repo)
    assert code == 1 and ("platform.yaml", line, 27) in invalid_ids(problems)


@pytest.mark.parametrize(
    "where, old, new",
    [
        ("site key", "\n  ph:\n", '\n  "ph\\n":\n'),
        ("task site", "site: ph\n", 'site: "ph\\n"\n'),
        ("task audience", "audiences: [new-users-ph,", 'audiences: ["new-users-ph\\n",'),
        ("task tester", "status: active", 'status: active\ntesters: ["u-tester-1\\n"]'),
        ("site tester", "testers: [u-tester-1, u-tester-2]", 'testers: [u-tester-1, "u-tester-2\\n"]'),
        ("audience users", "source:\n  where:", 'source:\n  users: ["u-1\\n"]\n  x-where:'),
    ],
)
def test_an_id_or_tester_with_a_trailing_newline_is_an_invalid_id(repo, where, old, new):
    path = {"site key": "platform.yaml", "site tester": "platform.yaml", "audience users": "audiences/high-points-ph.yaml"}.get(
        where, TASK
    )
    replace(repo, path, old, new)
    code, problems = validate(repo)
    assert code == 1
    assert any(file == path for file, _, _ in invalid_ids(problems)), problems


@pytest.mark.parametrize(
    "tester, valid",
    [
        ("u" * 32, True),
        ("user.42@ph", True),
        ("ユーザー1", True),
        ("u" * 33, False),
        ("u 1", False),
        ("u\\t1", False),
        ("u\\x001", False),
        ("u\\x7f1", False),
        ("u\\u00851", False),  # NEL, a C1 control character
        ("", False),
    ],
)
def test_testers_are_user_ids(repo, tester, valid):
    line = replace(repo, TASK, "status: active", f'status: active\ntesters: ["{tester}"]') + 1
    code, problems = validate(repo)
    if valid:
        assert code == 0, problems
    else:
        assert (TASK, line, 11) in invalid_ids(problems)


def test_a_file_name_with_a_trailing_newline_is_an_invalid_id(repo):
    source = repo / "creatives/flash-a.yaml"
    (repo / "creatives/spare\n.yaml").write_bytes(source.read_bytes())
    code, problems = validate(repo)
    assert code == 1 and ("creatives/spare\n.yaml", 1, 1) in invalid_ids(problems)


def test_a_variable_name_with_a_space_is_refused(repo):
    line = replace(repo, "templates/push-promo.yaml", "  first_name: {example", "  first name: {example")
    code, problems = validate(repo)
    assert code == 1
    assert [(p["line"], p["column"]) for p in problems if p["code"] == "schema" and "first name" in p["message"]] == [
        (line, 3)
    ]
