"""Cards: a creative rendered for one tester through delivery's render path, and its HTML."""

from __future__ import annotations

import html
from html.parser import HTMLParser
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config.models import Platform
from engine.preview.cards import render_card
from engine.preview.cards import tester_profile as profile_of
from engine.preview.render import environment

PLATFORM = Platform.model_validate(
    {
        "sites": {"ph": {"name": "PH wallet", "timezone": "Asia/Manila", "channels": ["push", "sms", "inbox-ewallet", "inbox-miniprogram"]}},
        "providers": {"default": {"type": "outbox", "path": ".campaigns/outbox"}},
    }
)
PUSH_TEMPLATE = {
    "channel": "push",
    "fields": {"title": {"required": True, "max_length": 20}, "content": {"required": True, "max_length": 100}, "redirection": {"required": True}},
    "variables": {"first_name": {"example": "Maria"}},
}
SMS_TEMPLATE = {"channel": "sms", "fields": {"content": {"required": True}}, "variables": {"first_name": {"example": "Maria"}}}


def push(title: str, content: str = "Hello") -> dict:
    return {"template": "t", "title": title, "content": content, "redirection": "https://shop.example.com/x"}


def test_examples_are_used_for_a_tester_the_directory_does_not_know():
    user, profile = profile_of("u-1", {}, PUSH_TEMPLATE)
    assert (user, profile) == ({"first_name": "Maria", "user_id": "u-1"}, "examples")
    user, profile = profile_of("u-1", {"u-1": {"first_name": "Tess"}}, PUSH_TEMPLATE)
    assert (user["first_name"], profile) == ("Tess", "directory")


def test_a_rendered_card_has_its_fields_and_length_bars():
    card = render_card("c", push("Hi {{ user.first_name }}"), PUSH_TEMPLATE, "push", PLATFORM, "u-1", {"first_name": "Tess"}, "directory")
    assert card.ok and card.field("title").text == "Hi Tess"
    assert (card.field("title").length, card.field("title").limit, card.field("title").percent) == (7, 20, 35)
    assert card.redirections == ("https://shop.example.com/x",)


def test_too_long_shows_the_text_and_the_failure():
    card = render_card("c", push("{{ user.first_name }}!"), PUSH_TEMPLATE, "push", PLATFORM, "u-1", {"first_name": "T" * 30}, "directory")
    assert not card.ok and card.reason == "too-long" and card.failed_field == "title"
    title = card.field("title")
    assert title.text == "T" * 30 + "!" and title.over and title.percent == 100


def test_missing_variable_is_the_failure_delivery_records():
    card = render_card("c", push("Hi {{ user.first_name }}"), PUSH_TEMPLATE, "push", PLATFORM, "u-1", {}, "directory")
    assert not card.ok and card.reason == "missing-variable" and "first_name" in card.error


def test_sms_cards_carry_encoding_segments_and_parts():
    text = "Hi {{ user.first_name }} " + "x" * 160
    card = render_card("s", {"template": "t", "content": text}, SMS_TEMPLATE, "sms", PLATFORM, "u", {"first_name": "Tess"}, "directory")
    assert card.sms.encoding == "gsm-7" and card.sms.segments == 2 and "".join(card.sms.parts) == card.field("content").text
    emoji = render_card("s", {"template": "t", "content": "Hi {{ user.first_name }} 😀"}, SMS_TEMPLATE, "sms", PLATFORM, "u", {"first_name": "Tess"}, "directory")
    assert emoji.sms.encoding == "ucs-2" and emoji.sms.segments == 1 and "😀" in emoji.sms.forcing


class Parsed(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))

    def handle_data(self, data):
        self.text.append(data)


TASKS = {
    channel: SimpleNamespace(channel=channel, app_name="PH wallet · shop", site_name="PH wallet", mini_program="shop")
    for channel in ("push", "sms", "inbox-ewallet", "inbox-miniprogram")
}
device = environment().get_template("macros.html.j2").module.device


@settings(max_examples=60, deadline=None)
@given(
    name=st.text(alphabet=st.sampled_from(list("<>&\"'=/ ab")) | st.characters(codec="utf-8"), min_size=1, max_size=40).filter(str.strip),
    channel=st.sampled_from(sorted(TASKS)),
)
def test_no_attribute_value_can_add_markup(name, channel):
    creative = {"template": "t", "title": "{{ user.first_name }}", "content": "Dear {{ user.first_name }}", "redirection": "https://shop.example.com/x"}
    if channel == "sms":
        creative = {"template": "t", "content": "Dear {{ user.first_name }}"}
    template = {**(SMS_TEMPLATE if channel == "sms" else PUSH_TEMPLATE), "fields": {"title": {}, "content": {}, "redirection": {}}}
    card = render_card("c", creative, template, channel, PLATFORM, "u-1", {"first_name": name}, "directory")
    page = Parsed()
    page.feed(str(device(TASKS[channel], card)))
    page.close()
    assert {tag for tag, _ in page.tags} <= {"div", "span", "code"}
    assert not [a for _, attrs in page.tags for a, _ in attrs if a.startswith("on") or a in ("src", "href", "style") and "url(" in str(_)]
    shown = html.unescape("".join(page.text))
    assert (card.field("content").text if card.ok else card.error) in shown or name.strip() in shown


def test_a_missing_variable_still_shows_the_fields_that_render():
    card = render_card(
        "c", push("Hi {{ user.first_name }}", "{{ user.city | default('Manila') }} deals"), PUSH_TEMPLATE, "push", PLATFORM, "u-1", {}, "directory"
    )
    assert not card.ok and card.failed_field == "title" and card.field("title") is None
    assert card.field("content").text == "Manila deals" and card.redirections == ("https://shop.example.com/x",)
