"""The plan's field differences are exactly deepdiff's, however the bodies are nested."""

from __future__ import annotations

from typing import Any

from deepdiff import DeepDiff
from deepdiff.helper import NotPresent
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.plan.diff import field_diffs, format_path

scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(-2, 2, allow_nan=False), st.sampled_from(["a", "b", ""]))
keys = st.sampled_from(["name", "text", "every", "start", "windows", "x"])
bodies = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)), max_leaves=25)


def by_deepdiff(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str, Any, Any]]:
    out = []
    for levels in DeepDiff(old, new, view="tree", ignore_order=False, threshold_to_diff_deeper=0).values():
        for level in levels:
            path = format_path(level.path(output_format="list"))
            t1 = None if isinstance(level.t1, NotPresent) else level.t1
            t2 = None if isinstance(level.t2, NotPresent) else level.t2
            kind = "added" if isinstance(level.t1, NotPresent) else "removed" if isinstance(level.t2, NotPresent) else "changed"
            out.append((path, kind, t1, t2))
    return sorted(out, key=lambda d: d[0])


def as_tuples(diffs) -> list[tuple[str, str, Any, Any]]:
    return [(d.path, d.kind, d.old, d.new) for d in diffs]


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(keys, bodies, max_size=5), st.dictionaries(keys, bodies, max_size=5))
def test_field_diffs_equal_deepdiffs(old: dict[str, Any], new: dict[str, Any]) -> None:
    assert as_tuples(field_diffs(old, new)) == by_deepdiff(old, new)


def test_a_changed_url_end_is_one_changed_field() -> None:
    old = {"name": "Top up", "creative": {"redirection": "https://shop.example.com/topup"}}
    new = {"name": "Top up", "creative": {"redirection": "https://shop.example.com/top-up-scam"}}
    assert as_tuples(field_diffs(old, new)) == [
        ("creative.redirection", "changed", "https://shop.example.com/topup", "https://shop.example.com/top-up-scam")
    ]


def test_type_changes_count_as_changes() -> None:
    assert [d.path for d in field_diffs({"a": 1, "b": True, "c": 1.0}, {"a": True, "b": 1, "c": 1})] == ["a", "b", "c"]
