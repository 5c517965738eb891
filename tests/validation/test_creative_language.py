"""``campaigns validate`` holds creatives to the creative language (issue 10, items 3-5): hostile
templates, texts that would print undeclared attributes, and redirections that could be steered
elsewhere are problems with stable codes, reported quickly, never a traceback or a hang."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cli_runner import campaigns_process
from repos import example_repo, write


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return example_repo(tmp_path / "repo")


def creative(content: str, *, redirection: str = "https://shop.example.com/flash-sale", title: str = "Flash sale") -> str:
    return (
        "name: Hostile\ntemplate: push-promo\n"
        f"title: {json.dumps(title)}\ncontent: {json.dumps(content)}\nredirection: {json.dumps(redirection)}\n"
    )


def problems(repo: Path) -> tuple[int, list[dict], float, str]:
    started = time.perf_counter()
    run = campaigns_process("validate", "--repo", str(repo), "--format", "json", timeout=60)
    elapsed = time.perf_counter() - started
    assert "Traceback" not in run.err and "Internal error" not in run.err, run.err
    document = json.loads(run.out)
    return run.code, [p for p in document["problems"] if p["file"] == "creatives/flash-a.yaml"], elapsed, run.err


HOSTILE_TEMPLATES = {
    "nested-range-loops": "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
    "lipsum": "{{ lipsum(n=10**7) }}",
    "string-multiplication": "{{ 'A' * 10**9 }}",
    "3000-parentheses": "{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}",
    "cycler": "{{ cycler('a', 'b').next() }}",
    "joiner": "{{ joiner(',')() }}",
    "deep-if-nesting": "{% if user.points %}" * 50 + "x" + "{% endif %}" * 50,
}


@pytest.mark.parametrize("content", list(HOSTILE_TEMPLATES.values()), ids=list(HOSTILE_TEMPLATES))
def test_hostile_templates_are_template_syntax_problems_found_quickly(repo, content):
    write(repo, "creatives/flash-a.yaml", creative(content))
    code, found, elapsed, _ = problems(repo)
    assert code == 1
    assert [p["code"] for p in found] == ["template-syntax"]
    assert found[0]["line"] == 4  # the content line
    assert elapsed < 10  # the whole process, start-up included; the check itself is milliseconds


LEAKS = {
    "whole-user": "{{ user }}",
    "tojson": "{{ user | tojson }}",
    "pprint": "{{ user | pprint }}",
    "format": "{{ '%s' | format(user) }}",
    "loop-over-user": "{% for k in user %}{{ k }}{% endfor %}",
    "map-attribute": "{{ user | map(attribute='first_name') | join(',') }}",
}


@pytest.mark.parametrize("content", list(LEAKS.values()), ids=list(LEAKS))
def test_texts_that_would_print_undeclared_attributes_are_refused(repo, content):
    write(repo, "creatives/flash-a.yaml", creative(content))
    code, found, _, _ = problems(repo)
    assert code == 1
    assert {p["code"] for p in found} <= {"template-syntax", "variable-unknown"} and found


def test_an_undeclared_variable_is_variable_unknown(repo):
    write(repo, "creatives/flash-a.yaml", creative("Hi {{ user.secret_score }} and {{ customer.name }}"))
    code, found, _, _ = problems(repo)
    assert code == 1
    assert [p["code"] for p in found] == ["variable-unknown", "variable-unknown"]
    assert any("secret_score" in p["message"] for p in found)


def test_the_creative_language_is_accepted(repo):
    write(
        repo,
        "creatives/flash-a.yaml",
        creative(
            "{% if user.points > 1000 %}{{ user.first_name | default('Friend') | title }}, you are a VIP!"
            "{% else %}Hi {{ user.first_name | default('there') | truncate(20) }}{% endif %}",
            redirection="https://shop.example.com/flash-sale?n={{ user.first_name | default('') | urlencode }}",
        ),
    )
    code, found, _, err = problems(repo)
    assert code == 0 and found == [], (found, err)


@pytest.mark.parametrize(
    "redirection",
    [
        "https://a@shop.example.com/x",
        "https://shop.example.com:99999/x",
        "https://{{ user.first_name }}.example.com/",
        "{{ user.first_name }}://shop.example.com/",
        "https://{{ user.first_name }}@shop.example.com/",
    ],
)
def test_static_userinfo_ports_and_variable_hosts_are_url_invalid(repo, redirection):
    write(repo, "creatives/flash-a.yaml", creative("Half price", redirection=redirection))
    code, found, _, _ = problems(repo)
    assert code == 1
    assert [p["code"] for p in found] == ["url-invalid"]


def test_a_templated_path_after_a_written_out_host_validates(repo):
    write(repo, "creatives/flash-a.yaml", creative("Half price", redirection="https://shop.example.com/{{ user.first_name }}"))
    code, found, _, _ = problems(repo)
    assert code == 0 and found == []


def test_a_variable_glued_to_the_host_is_url_invalid_with_the_examples(repo):
    """Found by the fuzz suite ("validate accepts => a render succeeds"): rendered with the
    example ``Maria``, ``https://shop.example.com{{ user.first_name }}`` goes to the host
    ``shop.example.commaria``, so delivery would fail every such user with url-invalid."""
    write(repo, "creatives/flash-a.yaml", creative("Half price", redirection="https://shop.example.com{{ user.first_name }}"))
    code, found, _, _ = problems(repo)
    assert code == 1 and [p["code"] for p in found] == ["url-invalid"]
    assert "shop.example.commaria" in found[0]["message"]
