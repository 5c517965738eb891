"""A template field without ``max_length`` is valid; then only the channel's own limits apply:
redirection 2,048 characters (1,024 through the wallet gateway), and a gateway ``messageContent``
of at most 4,096 characters (``content-too-long``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import campaigns
from hypothesis import given, settings
from hypothesis import strategies as st
from repos import example_repo, write

from engine.delivery.providers.base import Message
from engine.delivery.providers.gateway import CONTENT_MAX, message_content
from engine.validation.rules import gateway_content

PUSH_TEMPLATE = "templates/push-promo.yaml"
GATEWAY = "  push: {type: gateway, url: https://gateway.example.com/v1/messages, token_env: GATEWAY_TOKEN}\n"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = example_repo(tmp_path / "repo")
    text = (root / PUSH_TEMPLATE).read_text()
    text = text.replace("{required: true, max_length: 50}", "{required: true}")
    text = text.replace("{required: true, max_length: 178}", "{required: true}")
    text = text.replace("{required: true, max_length: 2048}", "{required: true}")
    write(root, PUSH_TEMPLATE, text)
    return root


def through_gateway(repo: Path, channel_line: str = GATEWAY) -> None:
    text = (repo / "platform.yaml").read_text()
    write(repo, "platform.yaml", text.replace("  default: {type: outbox, path: .campaigns/outbox}\n", "  default: {type: outbox, path: .campaigns/outbox}\n" + channel_line))


def creative(repo: Path, *, title: str = "Flash", content: str = "Deals", redirection: str = "https://shop.example.com/a") -> None:
    write(
        repo,
        "creatives/flash-a.yaml",
        "name: Flash A\ntemplate: push-promo\n"
        + f"title: {json.dumps(title)}\ncontent: {json.dumps(content)}\nredirection: {json.dumps(redirection)}\n",
    )


def problems(repo: Path) -> list[dict]:
    run = campaigns("validate", "--repo", str(repo), "--format", "json", "--no-cache")
    assert "Internal error" not in run.err, run.err
    return [p for p in json.loads(run.out)["problems"] if p["severity"] == "error"]


def codes(repo: Path) -> list[tuple[str, str, int]]:
    return [(p["code"], p["file"], p["line"]) for p in problems(repo)]


def test_template_fields_without_max_length_validate(repo):
    assert codes(repo) == []


def test_plan_works_with_templates_without_max_length(repo, tmp_path):
    run = campaigns("plan", "--repo", str(repo), "--state", f"sqlite:///{tmp_path / 'state.db'}", "--no-color")
    assert run.code == 0, run.out + run.err


def test_without_max_length_any_length_of_title_is_fine(repo):
    creative(repo, title="T" * 3000)
    assert codes(repo) == []


def url(length: int) -> str:
    head = "https://shop.example.com/"
    return head + "a" * (length - len(head))


def test_a_redirection_is_at_most_2048_characters_when_the_template_sets_no_limit(repo):
    creative(repo, redirection=url(2048))
    assert codes(repo) == []
    creative(repo, redirection=url(2049))
    assert codes(repo) == [("url-invalid", "creatives/flash-a.yaml", 5)]


@pytest.mark.parametrize(
    "provider",
    [GATEWAY, "  default: {type: gateway, url: https://gateway.example.com/v1/messages, token_env: GATEWAY_TOKEN}\n"],
    ids=["push entry", "default entry"],
)
def test_through_the_wallet_gateway_a_redirection_is_at_most_1024_characters(repo, provider):
    if "default" in provider:
        text = (repo / "platform.yaml").read_text()
        write(repo, "platform.yaml", text.replace("  default: {type: outbox, path: .campaigns/outbox}\n", provider))
    else:
        through_gateway(repo)
    creative(repo, redirection=url(1024))
    assert codes(repo) == []
    creative(repo, redirection=url(1025))
    [found] = problems(repo)
    assert (found["code"], found["file"], found["line"]) == ("url-invalid", "creatives/flash-a.yaml", 5)
    assert "wallet gateway" in found["message"] and "1,024" in found["message"]


def test_the_gateway_limit_does_not_apply_to_channels_delivered_otherwise(repo):
    through_gateway(repo, "  sms: {type: gateway, url: https://gateway.example.com/v1/messages, token_env: GATEWAY_TOKEN}\n")
    creative(repo, redirection=url(2000))
    assert codes(repo) == []


def content_length(title: str, content: str, redirection: str) -> int:
    """What the gateway provider itself would send, as JSON text."""
    message = Message("m", "t", "test", "u", "push", "flash-a", title, content, redirection)
    return len(message_content(message))


def test_content_too_long_counts_the_gateway_message_rendered_with_the_examples(repo):
    """The example first_name is "Maria": each {{ user.first_name }} is five characters."""
    through_gateway(repo)
    redirection = "https://shop.example.com/a"
    tag, example = "{{ user.first_name }}", "Maria"
    fixed = content_length("Flash", "", redirection)
    room = CONTENT_MAX - fixed  # characters of content that fit
    names = 40  # well inside the creative language's bound on the parts of one text
    rest = room - names * len(example)
    creative(repo, content=tag * names + "x" * rest)
    assert content_length("Flash", example * names + "x" * rest, redirection) == CONTENT_MAX
    assert codes(repo) == []
    creative(repo, content=tag * names + "x" * (rest + 1))
    [found] = problems(repo)
    assert (found["code"], found["file"], found["line"]) == ("content-too-long", "creatives/flash-a.yaml", 4)
    assert "4,097 characters" in found["message"] and "4,096" in found["message"]


def test_content_too_long_counts_json_escapes(repo):
    through_gateway(repo)
    creative(repo, content='"' * 2100)  # each quote is two characters as JSON
    assert [code for code, _, _ in codes(repo)] == ["content-too-long"]


def test_content_too_long_only_applies_through_the_gateway(repo):
    creative(repo, content="x" * 4000)
    assert codes(repo) == []


def test_a_field_without_max_length_is_held_to_the_render_budget(repo):
    """Delivery renders at most 4,096 characters of a field whose template sets no max_length:
    validate says so instead of letting every user fail with too-long."""
    creative(repo, content="x" * 5000)
    assert [code for code, _, _ in codes(repo)] == ["field-too-long"]


@settings(max_examples=200, deadline=None)
@given(
    title=st.one_of(st.none(), st.text(max_size=30)),
    content=st.one_of(st.none(), st.text(max_size=60)),
    redirection=st.one_of(st.none(), st.text(max_size=30), st.lists(st.text(max_size=10), max_size=3)),
    channel=st.sampled_from(["push", "sms", "inbox-ewallet", "inbox-miniprogram"]),
)
def test_validation_measures_the_message_content_the_gateway_sends(title, content, redirection, channel):
    message = Message("m", "t", "test", "u", channel, "c", title, content, redirection)
    assert gateway_content(title, content, redirection, channel) == message_content(message)
