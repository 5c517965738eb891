"""A YAML syntax error says how to fix the two common mistakes, at the offending line and column."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import campaigns
from hypothesis import given, settings
from hypothesis import strategies as st
from repos import EXAMPLE_LIVE_NOW, example_repo, write

from engine.config import yamlload

TASK = "campaigns/december-flash-sale/flash-sale-push.yaml"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return example_repo(tmp_path / "repo")


def validate_json(repo: Path) -> list[dict]:
    run = campaigns("validate", "--now", EXAMPLE_LIVE_NOW, "--repo", str(repo), "--format", "json", "--no-cache")
    assert run.code == 1, run.out + run.err
    return json.loads(run.out)["problems"]


def parse_problem(text: str) -> yamlload.YamlProblem:
    with pytest.raises(yamlload.YamlProblem) as caught:
        yamlload.parse(text)
    return caught.value


def test_tab_in_indentation_says_indent_with_spaces(repo):
    text = (repo / TASK).read_text().replace("  start_date:", "\tstart_date:")
    write(repo, TASK, text)
    line = text.splitlines().index("\tstart_date: 2026-12-01") + 1
    [problem] = validate_json(repo)
    assert (problem["file"], problem["line"], problem["column"], problem["code"]) == (TASK, line, 1, "yaml-syntax")
    assert "indent with spaces" in problem["message"]


@pytest.mark.parametrize(
    "text, line, column",
    [
        ("a:\n\tb: 1\n", 2, 1),  # the first indented line
        ("a:\n  b: 1\n\tc: 2\n", 3, 1),  # a later line of a mapping
        ("a:\n  -\tb\n", 2, 4),  # a tab after a list dash
        ("a:\n  - x\n  - y\n \t- z\n", 4, 2),  # spaces then a tab
    ],
)
def test_every_kind_of_tab_indentation_points_at_the_tab(text, line, column):
    problem = parse_problem(text)
    assert (problem.line, problem.column) == (line, column)
    assert "indent with spaces" in problem.message


def test_unquoted_double_brace_says_put_the_text_in_quotes(repo):
    write(
        repo,
        "creatives/flash-a.yaml",
        "name: Flash A\ntemplate: push-promo\ntitle: {{ user.first_name }}, 50% off\ncontent: Deals\n"
        "redirection: https://shop.example.com/a\n",
    )
    [problem] = validate_json(repo)
    assert (problem["file"], problem["line"], problem["column"], problem["code"]) == (
        "creatives/flash-a.yaml", 3, 8, "yaml-syntax"
    )
    assert "put the text in quotes" in problem["message"]
    assert 'title: "{{ user.first_name }}, 50% off"' in problem["message"]


def test_a_double_brace_value_that_yaml_reads_as_a_mapping_says_put_it_in_quotes(repo):
    """``title: {{ user.first_name }}`` is valid YAML (a mapping with a mapping as its key)."""
    write(
        repo,
        "creatives/flash-a.yaml",
        "name: Flash A\ntemplate: push-promo\ntitle: {{ user.first_name }}\ncontent: Deals\n"
        "redirection: https://shop.example.com/a\n",
    )
    [problem] = validate_json(repo)
    assert (problem["line"], problem["column"], problem["code"]) == (3, 8, "yaml-syntax")
    assert 'put the text in quotes: title: "{{ user.first_name }}"' in problem["message"]


@pytest.mark.parametrize(
    "text, line, column, opening",
    [
        ("title: {% if user.vip %}VIP{% endif %} deals\n", 1, 8, "{%"),
        ("name: x\nredirection:\n  - {{ user.link }}/a\n", 3, 5, "{{"),
        ("name: x\ncontent: {{ user.first_name }} and {{ user.points }}\nother: 1\n", 2, 10, "{{"),
        ("name: x\ncontent: {{ user.first_name\n  }} hi\nother: y\n", 2, 10, "{{"),
        ("items: [{{ user.x }}]\n", 1, 9, "{{"),
    ],
)
def test_template_values_in_other_places_say_put_the_text_in_quotes(text, line, column, opening):
    problem = parse_problem(text)
    assert (problem.line, problem.column) == (line, column)
    assert f"starts with {opening!r}" in problem.message and "put the text in quotes" in problem.message


def test_quoting_as_the_hint_says_makes_the_file_load():
    problem = parse_problem("title: {{ user.first_name }}, 50% off\n")
    fixed = problem.message.split("put the text in quotes: ", 1)[1]
    assert yamlload.load(fixed.encode()) == {"title": "{{ user.first_name }}, 50% off"}


def test_other_syntax_errors_keep_their_message_and_position():
    problem = parse_problem("a: [1, 2\nb: 3\n")
    assert "indent with spaces" not in problem.message and "quotes" not in problem.message
    assert (problem.line, problem.column) == (2, 2)


def test_braces_inside_text_and_flow_mappings_are_still_fine():
    assert yamlload.load(b"title: Hi {{ user.first_name }}\nwindow: {start: '09:00'}\nnested: {a: {b: 1}}\n") == {
        "title": "Hi {{ user.first_name }}",
        "window": {"start": "09:00"},
        "nested": {"a": {"b": 1}},
    }


@settings(max_examples=200, deadline=None)
@given(
    key=st.from_regex(r"[a-z][a-z_]{0,10}", fullmatch=True),
    inner=st.from_regex(r"[ a-z._|()0-9]{0,20}", fullmatch=True),
    tail=st.from_regex(r"[ a-z,.!%]{0,20}", fullmatch=True),
)
def test_any_unquoted_template_value_gets_the_quote_hint_at_its_start(key, inner, tail):
    text = f"name: x\n{key}: {{{{{inner}}}}}{tail}\n"
    try:
        yamlload.parse(text)
    except yamlload.YamlProblem as problem:
        assert (problem.line, problem.column) == (2, len(key) + 3)
        assert "put the text in quotes" in problem.message
    else:  # only a duplicate of "name" can make it parse: {{...}} never loads as text
        raise AssertionError(f"{text!r} loaded")
