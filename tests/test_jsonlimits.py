"""engine.jsonlimits: the depth is measured exactly without parsing, and a document within the
limits parses exactly as ``json`` parses it (property tests over generated JSON)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import jsonlimits

# Strings full of what could fool a bracket counter: quotes, backslashes, brackets, escapes.
TEXT = st.text(alphabet=st.sampled_from('ab"\\/[]{}\n\t\u00e9\u2028\U0001f600'), max_size=8)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=40,
)


def depth(value) -> int:
    if isinstance(value, (list, dict)):
        children = value.values() if isinstance(value, dict) else value
        return 1 + max((depth(child) for child in children), default=0)
    return 0


@settings(max_examples=500, deadline=None)
@given(VALUES, st.booleans(), st.booleans())
def test_nesting_depth_is_the_depth_of_the_value_whatever_its_strings_hold(value, ascii_only, indented):
    text = json.dumps(value, ensure_ascii=ascii_only, indent=1 if indented else None)
    assert jsonlimits.nesting_depth(text.encode()) == depth(value)


@settings(max_examples=300, deadline=None)
@given(VALUES)
def test_a_document_within_the_limits_parses_as_json_parses_it(value):
    raw = json.dumps(value).encode()
    assert jsonlimits.loads(raw, what="doc", max_bytes=len(raw), max_depth=depth(value)) == json.loads(raw)
    if depth(value):
        with pytest.raises(jsonlimits.JSONTooDeep, match=f"doc nests {depth(value)} levels deep; at most {depth(value) - 1}"):
            jsonlimits.loads(raw, what="doc", max_bytes=len(raw), max_depth=depth(value) - 1)
    with pytest.raises(jsonlimits.JSONTooLarge, match=f"doc is {len(raw):,} bytes"):
        jsonlimits.loads(raw, what="doc", max_bytes=len(raw) - 1)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(alphabet=st.sampled_from('[]{}"\\:,0a '), max_size=200).map(str.encode))
def test_any_bytes_give_a_value_or_a_one_line_json_error(raw):
    try:
        jsonlimits.loads(raw, what="doc", max_bytes=1000, max_depth=5)
    except jsonlimits.JSONLimitError as problem:
        assert "\n" not in str(problem) and str(problem).startswith("doc ")


@pytest.mark.parametrize(
    "raw,error",
    [
        (b"[" * 100_000, jsonlimits.JSONTooDeep),  # unbalanced: still measured, never parsed
        (b'"' + b"[" * 100_000, jsonlimits.JSONInvalid),  # inside an unterminated string: not nesting
        (b"NaN", jsonlimits.JSONInvalid),
        (b"[Infinity]", jsonlimits.JSONInvalid),
        (b"9" * 5000, jsonlimits.JSONInvalid),
        (b"\xff\xfe", jsonlimits.JSONNotText),
        (b"  ", jsonlimits.JSONInvalid),
    ],
)
def test_hostile_documents_are_refused_with_their_own_error(raw, error):
    with pytest.raises(error):
        jsonlimits.loads(raw, what="doc", max_bytes=1_000_000)
