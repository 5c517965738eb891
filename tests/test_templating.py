"""Creative texts: the sandbox, strict variables, and the fast path agreeing with Jinja's parser."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2 import UndefinedError
from jinja2.exceptions import SecurityError

from engine.templating import _analyze_simple, analyze, analyze_with_jinja, preview_length, render


def test_render_with_user_attributes():
    assert render("Hi {{ user.first_name }}, {{ user.points | default(0) }} pts", {"first_name": "Ana"}) == "Hi Ana, 0 pts"


def test_missing_variable_raises_instead_of_leaving_a_hole():
    with pytest.raises(UndefinedError):
        render("Hi {{ user.first_name }}!", {})


def test_sandbox_blocks_private_attributes_at_render_time():
    # the sandbox hides unsafe attributes (StrictUndefined then refuses to print them)
    with pytest.raises((SecurityError, UndefinedError)):
        render("{{ user.items.__globals__ }}", {})
    with pytest.raises(SecurityError):
        render("{{ user.update.__self__.clear() }}", {"a": 1})


def test_plain_text_is_returned_as_is():
    assert render("No {placeholders} here", {}) == "No {placeholders} here"
    assert render(None, {}) is None


def test_preview_length_uses_example_values():
    analysis = analyze("Hi {{ user.first_name }}!")
    assert preview_length(analysis.literal_length, analysis.outputs, {"first_name": "Maria"}) == len("Hi Maria!")


pieces = st.one_of(
    st.text(alphabet=st.characters(blacklist_characters="{}%#"), max_size=8),
    st.sampled_from(["{", "}", "%", "#", " "]),
    st.builds(
        lambda name, spaces, default: "{{" + spaces + "user." + name + spaces + default + "}}",
        st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,6}", fullmatch=True),
        st.sampled_from(["", " ", "  "]),
        st.sampled_from(["", "| default(0) ", "|default('x')", '| default("a b")', "| default(-1.5) ", "| upper ", "| default(x) "]),
    ),
    st.sampled_from(["{{ user._x }}", "{{ user.__class__ }}", "{% if user.a %}y{% endif %}", "{# c #}", "{{ x }}", "{{ user['a'] }}"]),
)


@settings(max_examples=600, deadline=None)
@given(st.lists(pieces, max_size=6).map("".join))
def test_fast_path_agrees_with_the_jinja_parser(text):
    simple = _analyze_simple(text)
    if simple is not None:
        assert simple == analyze_with_jinja(text)
    assert analyze(text) == (simple if simple is not None else analyze_with_jinja(text)) or "{" not in text
