"""Creative texts: the creative language the checker allows, the sandbox, strict variables,
the render budgets, and the fast path agreeing with the full checker."""

from __future__ import annotations

import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jinja2 import UndefinedError
from jinja2.exceptions import SecurityError

from engine import templating
from engine.delivery.render import REASONS, CreativeText, RenderError
from engine.templating import (
    MAX_VALUE_CHARS,
    SAFE_FILTERS,
    Budget,
    RenderTimeout,
    TemplateRefused,
    TooLong,
    UserView,
    _analyze_simple,
    analyze,
    analyze_with_jinja,
    environment,
    preview_length,
    render,
    render_with,
)


def test_render_with_user_attributes():
    assert render("Hi {{ user.first_name }}, {{ user.points | default(0) }} pts", {"first_name": "Ana"}) == "Hi Ana, 0 pts"


def test_missing_variable_raises_instead_of_leaving_a_hole():
    with pytest.raises(UndefinedError):
        render("Hi {{ user.first_name }}!", {})


def test_sandbox_still_blocks_private_attributes_at_render_time():
    # the checker refuses these texts; were one compiled anyway, the sandbox still refuses it
    with pytest.raises(TemplateRefused):
        render("{{ user.items.__globals__ }}", {})
    template = environment().from_string("{{ user.update.__self__ }}")
    with pytest.raises((SecurityError, UndefinedError)):
        render_with(template, UserView({}), Budget())


def test_the_environment_has_no_globals_and_only_the_safe_filters():
    env = environment()
    assert env.globals == {}
    assert set(env.filters) == set(SAFE_FILTERS)
    for name in ("tojson", "pprint", "format", "map", "attr", "join", "center", "indent", "wordwrap"):
        assert name not in env.filters


def test_multiplication_fails_at_render_even_past_the_checker():
    template = environment().from_string("{{ 'A' * 1000000000 }}")
    with pytest.raises(SecurityError):
        render_with(template, UserView({}), Budget())


def test_plain_text_is_returned_as_is():
    assert render("No {placeholders} here", {}) == "No {placeholders} here"
    assert render(None, {}) is None


def test_preview_length_uses_example_values():
    analysis = analyze("Hi {{ user.first_name }}!")
    assert preview_length(analysis.literal_length, analysis.outputs, {"first_name": "Maria"}) == len("Hi Maria!")


# --- the checker -----------------------------------------------------------------------------

HOSTILE = {
    "nested range loops": "{% for i in range(10**4) %}{% for j in range(10**4) %}x{% endfor %}{% endfor %}",
    "lipsum": "{{ lipsum(n=10**7) }}",
    "string multiplication": "{{ 'A' * 10**9 }}",
    "number power": "{{ 9 ** 999999 }}",
    "string formatting with %": "{{ '%999999999d' % 1 }}",
    "3,000 parentheses": "{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}",
    "3,000 brackets": "{{ " + "[" * 3000 + "]" * 3000 + " }}",
    "3,000 nots": "{{ " + "not " * 3000 + "user.a }}",
    "3,000 minus signs": "{{ " + "-" * 3000 + "1 }}",
    "3,000 nested ifs": "{% if user.a %}" * 3000 + "{% endif %}" * 3000,
    "3,000 inline ifs": "{{ " + "1 if user.a else " * 3000 + "2 }}",
    "a long filter chain": "{{ user.a" + "|upper" * 40 + " }}",
    "cycler": "{{ cycler(1, 2).next() }}",
    "joiner": "{{ joiner(',')() }}",
    "namespace": "{{ namespace(a=1) }}",
    "the whole user": "{{ user }}",
    "tojson": "{{ user | tojson }}",
    "pprint": "{{ user | pprint }}",
    "format": "{{ '%s' | format(user) }}",
    "a loop over user": "{% for k in user %}{{ k }}{% endfor %}",
    "map over user": "{{ user | map(attribute='first_name') | join(',') }}",
    "a method call": "{{ user.first_name.upper() }}",
    "dunder": "{{ user.__class__ }}",
    "nested attribute": "{{ user.first_name.real }}",
    "set": "{% set x = user.first_name %}{{ x }}",
    "macro": "{% macro m() %}x{% endmacro %}{{ m() }}",
    "include": "{% include 'other' %}",
    "filter block": "{% filter upper %}x{% endfilter %}",
    "center": "{{ user.first_name | center(1000000000) }}",
    "inline if without else": "{{ 'x' if user.a }}",
    "wrong filter arguments": "{{ user.a | upper(1, 2) }}",
    "dict literal": "{{ {'a': user.a} }}",
    "computed index": "{{ user.a[user.b] }}",
}


@pytest.mark.parametrize("text", list(HOSTILE.values()), ids=list(HOSTILE))
def test_the_checker_refuses_what_is_not_the_creative_language_quickly(text):
    started = time.perf_counter()
    analysis = analyze(text)
    assert analysis.error, f"accepted: {text[:80]!r}"
    assert time.perf_counter() - started < 2
    with pytest.raises(TemplateRefused):  # and it is never compiled for a render either
        render(text, {"a": "x", "b": 1, "first_name": "Ana"})


ACCEPTED = {
    "plain": "Hello there",
    "attribute": "Hi {{ user.first_name }}",
    "item": "Hi {{ user['first_name'] }}",
    "default": "{{ user.points | default(0) }} points",
    "filters": "{{ user.first_name | default('friend') | trim | title | truncate(20) }}",
    "if/elif/else": "{% if user.tier == 'gold' %}Gold{% elif user.tier in ['silver', 'bronze'] %}Metal{% else %}Hi{% endif %}",
    "defined guard": "{% if user.city is defined %}in {{ user.city }}{% endif %}",
    "arithmetic": "{{ user.points + 10 - 1 }} points",
    "concatenation": "{{ user.first_name ~ '!' }}",
    "inline if": "{{ 'VIP' if user.tier == 'gold' else 'friend' }}",
    "slice": "{{ user.first_name[:10] }}",
    "urlencode": "https://shop.example.com/?n={{ user.first_name | urlencode }}",
    "replace": "{{ user.first_name | replace(' ', '-') | lower }}",
    "numbers": "{{ user.points | int | abs }} / {{ user.rate | float | round(2) }}",
    "raw": "{% raw %}{{ not a tag }}{% endraw %}",
    "comment": "Hi{# a note #}",
}


@pytest.mark.parametrize("text", list(ACCEPTED.values()), ids=list(ACCEPTED))
def test_the_checker_accepts_the_creative_language(text):
    analysis = analyze(text)
    assert analysis.error is None and analysis.unknown_names == ()


def test_names_other_than_user_are_unknown_variables_not_syntax():
    assert analyze("{{ customer.name }}").unknown_names == ("customer",)
    assert analyze("{{ x }}").unknown_names == ("x",)


def test_required_attributes_leave_out_defaults_and_guards():
    analysis = analyze(
        "{% if user.tier == 'gold' %}{{ user.first_name | default('you') }}{% endif %}"
        "{% if user.city is defined %}{{ user.city }}{% endif %}{{ user.points }}"
    )
    assert set(analysis.variables) == {"tier", "first_name", "city", "points"}
    assert analysis.required == ("tier", "points")


# --- rendering under budget ------------------------------------------------------------------


def test_only_the_given_attributes_are_visible_and_never_as_dict_methods():
    assert render("{{ user.items }}-{{ user.keys | default('none') }}", {"items": 3}) == "3-none"
    with pytest.raises(UndefinedError):
        render("{{ user.secret }}", {})


def test_output_over_the_field_limit_is_too_long():
    with pytest.raises(TooLong):
        render("{{ user.first_name }} and more", {"first_name": "A" * 200}, limit=160)
    assert render("{{ user.first_name }}", {"first_name": "A" * 160}, limit=160) == "A" * 160


def test_a_growing_filter_refuses_before_building_a_huge_text():
    tracemalloc.start()
    try:
        with pytest.raises(TooLong):
            render("{{ user.a | replace('', 'BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB') }}", {"a": "x" * 10_000})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000


def test_an_oversized_attribute_is_too_long_when_read():
    with pytest.raises(TooLong):
        render("{{ user.bio | truncate(10) }}", {"bio": "x" * (MAX_VALUE_CHARS + 1)})


def test_a_render_over_its_time_budget_is_a_render_timeout():
    text = "".join("{{ user.a | replace('a', 'b') }}" for _ in range(60))
    with pytest.raises(RenderTimeout):
        render(text, {"a": "a" * 2000}, limit=10**6, seconds=0.0)


def test_render_error_reasons_through_creative_text():
    template = {"fields": {"title": {"max_length": 10}}, "variables": {"first_name": {"example": "Ana"}}}
    creative = CreativeText("c", {"title": "Hi {{ user.first_name }}", "content": "x"}, template)
    with pytest.raises(RenderError) as missing:
        creative.render({"user_id": "u1"})
    assert (missing.value.reason, missing.value.detail) == ("missing-variable", "title: the user has no 'first_name' attribute (missing variable)")
    with pytest.raises(RenderError) as long:
        creative.render({"user_id": "u1", "first_name": "Bartholomew"})
    assert long.value.reason == "too-long" and long.value.detail.startswith("title:")
    with pytest.raises(RenderError) as blank:  # an empty value is missing: no blank hole
        creative.render({"user_id": "u1", "first_name": ""})
    assert blank.value.reason == "missing-variable"


def test_undeclared_attributes_never_reach_the_text():
    template = {"fields": {}, "variables": {"first_name": {"example": "Ana"}}}
    creative = CreativeText("c", {"title": "{{ user.first_name }} {{ user.secret | default('hidden') }}"}, template)
    title, _, _ = creative.render({"user_id": "u1", "first_name": "Ana", "secret": "s3cr3t"})
    assert title == "Ana hidden"


# --- the fast path ---------------------------------------------------------------------------

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
def test_fast_path_agrees_with_the_full_checker(text):
    simple = _analyze_simple(text)
    if simple is not None:
        full = analyze_with_jinja(text)
        assert full.error is None  # the fast path accepts a subset of what the checker accepts
        assert simple == full
    assert analyze(text) == (simple if simple is not None else analyze_with_jinja(text)) or "{" not in text


# --- properties: accepted => renders within budget; the checker never breaks -----------------

DECLARED = ("first_name", "points", "tier", "city")

_atoms = st.sampled_from(
    [
        "user.first_name", "user.points", "user.tier", "user['city']", "'gold'", "''", "0", "-1", "2.5", "true", "none",
        "[1, 'a']", "user.first_name[:3]", "user.first_name[0]", "range", "user", "x", "lipsum(5)", "user.a.b",
    ]
)  # fmt: skip
_filters = st.sampled_from(
    [
        "default('friend')", "d(0)", "upper", "lower", "title", "capitalize", "trim", "truncate(5)", "truncate(3, true, '..')",
        "replace('a', 'AAAA')", "replace('', '--')", "urlencode", "round(1)", "int", "float", "abs", "string", "length",
        "tojson", "format(1)", "center(10)",
    ]
)  # fmt: skip
_binary = st.sampled_from([" ~ ", " + ", " - ", " == ", " != ", " < ", " >= ", " in ", " and ", " or ", " * ", " % "])


def _expression(depth: int = 3) -> st.SearchStrategy[str]:
    if depth == 0:
        return _atoms
    smaller = _expression(depth - 1)
    return st.one_of(
        _atoms,
        st.builds(lambda e, fs: e + "".join("|" + f for f in fs), smaller, st.lists(_filters, max_size=4)),
        st.builds(lambda a, op, b: f"({a}{op}{b})", smaller, _binary, smaller),
        st.builds(lambda a, b, c: f"({a} if {b} else {c})", smaller, smaller, smaller),
        st.builds(lambda e: f"not {e}", smaller),
        st.builds(lambda e: f"({e} is defined)", smaller),
    )


def _text(depth: int = 2) -> st.SearchStrategy[str]:
    piece = st.one_of(
        st.text(alphabet="abc ,.!/", max_size=6),
        _expression().map(lambda e: "{{ " + e + " }}"),
    )
    if depth == 0:
        return st.lists(piece, max_size=4).map("".join)
    inner = _text(depth - 1)
    block = st.builds(lambda c, a, b: "{% if " + c + " %}" + a + "{% else %}" + b + "{% endif %}", _expression(1), inner, inner)
    return st.lists(st.one_of(piece, block), max_size=4).map("".join)


_values = st.one_of(
    st.none(),
    st.text(max_size=20),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=3), st.integers(min_value=1000, max_value=8000)),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_text(), st.fixed_dictionaries({name: _values for name in DECLARED}))
def test_any_text_the_checker_accepts_renders_within_budget(text, values):
    analysis = analyze(text)
    if analysis.error or analysis.unknown_names or set(analysis.variables) - set(DECLARED):
        return
    template = {"fields": {"title": {"max_length": 500}}, "variables": {name: {"example": "x"} for name in DECLARED}}
    creative = CreativeText("c", {"title": text}, template)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        title, _, _ = creative.render({"user_id": "u1", **values})
    except RenderError as problem:
        assert problem.reason in REASONS
    else:
        assert title is None or len(title) <= 500
    finally:
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert elapsed < 1.0
    assert peak < 50_000_000


_noise = st.text(alphabet="{}%#()[]|.~+-*/'\" abcnotifusr_0123456789=<>!", max_size=200)


@settings(max_examples=500, deadline=None)
@given(st.one_of(_noise, st.builds(lambda a, n, b: a * n + b, _noise, st.integers(0, 2000), _noise)))
def test_the_checker_never_raises_and_never_hangs(text):
    started = time.perf_counter()
    analysis = analyze(text)
    assert isinstance(analysis, templating.TextAnalysis)
    assert time.perf_counter() - started < 2
