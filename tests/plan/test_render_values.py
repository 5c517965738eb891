"""The text and Markdown plans hide no change: long values are shown whole or as a diff whose
changed part is always there and marked; the comment limit is met by leaving out whole lines or
whole changes (and saying which), never part of a value."""

from __future__ import annotations

import json
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.plan import render
from engine.plan.model import Change, FieldDiff, Plan

ANSI = re.compile(r"\x1b\[[0-9;]*m")
MARKERS = re.compile(r"\[-|-\]|\{\+|\+\}")
REVERSE = "\x1b[7m"

OLD_URL = "https://shop.example.com/promotions/2026/christmas/wallet/landing-pages/philippines/gcash/topup"
NEW_URL = "https://shop.example.com/promotions/2026/christmas/wallet/landing-pages/philippines/gcash/top-up-scam"


def plan_of(*changes: Change) -> Plan:
    return Plan("lineage-1", 3, "d" * 64, "2026-01-01T00:00:00Z", "sqlite:///x", list(changes))


def update(address: str = "creative.flash-a", *diffs: FieldDiff) -> Change:
    kind, _, rid = address.partition(".")
    return Change(address, kind, rid, "update", "a" * 64, "b" * 64, diffs=list(diffs))


def create(address: str, body: dict) -> Change:
    kind, _, rid = address.partition(".")
    return Change(address, kind, rid, "create", None, "b" * 64, body=body)


def json_text(value: str) -> str:
    """How a string appears inside the plan's JSON rendering of it (without the quotes)."""
    return json.dumps(value, ensure_ascii=False)[1:-1]


def differing_parts(old: str, new: str) -> tuple[str, str]:
    """From the first character that differs to the last, in each value."""
    limit = min(len(old), len(new))
    head = 0
    while head < limit and old[head] == new[head]:
        head += 1
    tail = 0
    while tail < limit - head and old[-1 - tail] == new[-1 - tail]:
        tail += 1
    return old[head : len(old) - tail], new[head : len(new) - tail]


def unmarked(text: str) -> str:
    return MARKERS.sub("", ANSI.sub("", text))


# -- the example ------------------------------------------------------------------------


def test_a_url_changed_at_its_end_shows_both_urls_whole_with_the_change_marked():
    plan = plan_of(update("creative.flash-a", FieldDiff("redirection", "changed", OLD_URL, NEW_URL)))
    text = render.as_text(plan)
    assert "…" not in text
    assert f'- "{OLD_URL[:-5]}[-topup-]"' in text
    assert f'+ "{NEW_URL[:-11]}{{+top-up-scam+}}"' in text
    document = render.as_markdown(plan)
    assert "…" not in document
    assert f'-   "{OLD_URL[:-5]}[-topup-]"' in document  # a `-` line: GitHub colours it red
    assert f'+   "{NEW_URL[:-11]}{{+top-up-scam+}}"' in document


def test_with_colour_the_change_is_in_reverse_video_and_needs_no_brackets():
    plan = plan_of(update("creative.flash-a", FieldDiff("redirection", "changed", OLD_URL, NEW_URL)))
    text = render.as_text(plan, color=True)
    assert f"{REVERSE}topup" in text and f"{REVERSE}top-up-scam" in text
    plain = ANSI.sub("", text)
    assert f'- "{OLD_URL}"' in plain and f'+ "{NEW_URL}"' in plain
    assert "[-" not in plain and "{+" not in plain


def test_short_changes_stay_on_one_line():
    plan = plan_of(update("creative.flash-a", FieldDiff("title", "changed", "Hi", "Hello")))
    assert '~ title: "Hi" -> "Hello"' in render.as_text(plan)
    assert '~ title: "Hi" -> "Hello"' in render.as_markdown(plan)


def test_markdown_shortens_only_the_unchanged_ends_of_a_long_text():
    sentence = "Spend your points in our shop before the end of the year. "
    old = "Hi {{ user.first_name }}, " + sentence * 20 + "Offer ends Sunday. " + sentence * 20
    new = old.replace("Offer ends Sunday.", "Offer ends Monday.")
    plan = plan_of(update("creative.flash-a", FieldDiff("content", "changed", old, new)))
    document = render.as_markdown(plan)
    assert "[-Sunday-]" in document and "{+Monday+}" in document
    assert re.search(r"…\([\d,]+ unchanged characters\)…", document)
    assert len(document) < len(old)  # a few words around the change, not 2,500 characters twice
    assert f'"{old}"' in render.as_text(plan).replace("[-Sunday-]", "Sunday")  # text: whole


def test_a_long_list_value_is_diffed_too():
    old = [f"https://shop.example.com/r/{index}" for index in range(8)]
    new = old[:5] + ["https://evil.example.com/r/5"] + old[6:]
    plan = plan_of(update("creative.flash-a", FieldDiff("redirection", "changed", old, new)))
    text = render.as_text(plan)
    assert "[-shop-]" in text and "{+evil+}" in text
    assert unmarked(text).count(json.dumps(old, ensure_ascii=False, sort_keys=True)) == 1


# -- never a value cut ----------------------------------------------------------------------------


def test_creates_show_long_values_whole():
    content = "Lorem ipsum dolor sit amet, " * 200  # 5,600 characters, over the Markdown field budget
    plan = plan_of(create("creative.flash-z", {"name": "Z", "content": content, "title": "T"}))
    line = f"+ content = {json.dumps(content)}"
    assert line in render.as_text(plan)
    assert line in render.as_markdown(plan)


def test_a_change_over_the_field_budget_leaves_out_whole_fields_and_names_them():
    size = render.FIELD_BUDGET // 3
    diffs = [FieldDiff(f"field{index}", "added", None, f"value {index} " + "x" * size) for index in range(5)]
    document = render.as_markdown(plan_of(update("creative.flash-a", *diffs)))
    shown = [index for index in range(5) if f"+ field{index} = " in document]
    assert shown[0] == 0 and len(shown) < 5
    for index in shown:  # every field shown is whole
        assert f'+ field{index} = "value {index} {"x" * size}"\n' in document
    left_out = [f"`field{index}`" for index in range(5) if index not in shown]
    note = next(line for line in document.splitlines() if "left out to keep the comment short" in line)
    assert all(name in note for name in left_out)
    assert note.startswith(f"_{len(left_out)} more field changes left out")


def test_the_comment_limit_leaves_out_whole_changes_and_names_them():
    long = "word " * 1000
    changes = [
        update(f"creative.c-{index:03d}", FieldDiff("content", "changed", long + f"end {index}", long + f"fin {index}"))
        for index in range(200)
    ]
    changes.insert(3, create("creative.huge", {"content": "y" * 70_000}))  # can never fit
    plan = plan_of(*changes)
    for limit in (5_000, 20_000, render.GITHUB_COMMENT_LIMIT):
        document = render.as_markdown(plan, limit=limit)
        assert len(document) <= limit
        note = document.strip().splitlines()[-1]
        shown = document.count("<details>")
        assert f"{201 - shown:,} were left out" in note
        assert "`creative.huge`" in note  # the change that did not fit is named
        assert "y" * 100 not in document  # ... and no part of it is shown
        for index in range(200):
            if f"creative.c-{index:03d}</code>" in document:  # a change shown shows its change
                assert f"[-end-] {index}" in document and f"{{+fin+}} {index}" in document


# -- the property: whatever the strings, the differing part is there ---------------------------------

# Brackets and braces are left out of the alphabet so the diff markers can be told from the text.
ALPHABET = st.characters(blacklist_characters="[]{}", blacklist_categories=("Cs",))
LONG = st.text(ALPHABET, min_size=render.INLINE_WIDTH // 2, max_size=400)


@st.composite
def long_pairs(draw) -> tuple[str, str]:
    old = draw(LONG)
    if draw(st.booleans()):
        new = draw(LONG)
    else:  # a few edits anywhere: start, middle, end
        new = old
        for _ in range(draw(st.integers(1, 3))):
            start = draw(st.integers(0, len(new)))
            end = draw(st.integers(start, min(len(new), start + 30)))
            new = new[:start] + draw(st.text(ALPHABET, max_size=30)) + new[end:]
    return old, new


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(long_pairs())
def test_text_and_markdown_always_show_what_differs(pair):
    old, new = pair
    if old == new:
        return
    plan = plan_of(update("creative.flash-a", FieldDiff("content", "changed", old, new)))
    old_part, new_part = differing_parts(old, new)
    text = render.as_text(plan)
    coloured = render.as_text(plan, color=True)
    document = render.as_markdown(plan)
    for output in (text, coloured, document):
        shown = unmarked(output)
        assert json_text(old_part) in shown
        assert json_text(new_part) in shown
    for output in (text, coloured):  # text shows both values whole
        assert json.dumps(old, ensure_ascii=False) in unmarked(output)
        assert json.dumps(new, ensure_ascii=False) in unmarked(output)
    if len(render.show_value(old)) + len(render.show_value(new)) > render.INLINE_WIDTH:  # a diff: marked
        assert re.search(r"\[-|\{\+", text) and re.search(r"\[-|\{\+", document)
        assert REVERSE in coloured


@settings(max_examples=200, deadline=None)
@given(st.text(ALPHABET, max_size=300), st.text(ALPHABET, max_size=300), st.integers(0, 60))
def test_diff_segments_rebuild_both_values_and_share_the_unchanged_runs(old, new, context):
    old_runs, new_runs = render.diff_segments(old, new)
    assert "".join(text for text, _ in old_runs) == old
    assert "".join(text for text, _ in new_runs) == new
    assert [text for text, changed in old_runs if not changed] == [text for text, changed in new_runs if not changed]
    old_short, new_short = render.diff_segments(old, new, context=context)
    old_part, new_part = differing_parts(old, new)
    assert old_part in unmarked("".join(text for text, _ in old_short))
    assert new_part in unmarked("".join(text for text, _ in new_short))


def test_json_keeps_whole_values():
    plan = plan_of(update("creative.flash-a", FieldDiff("redirection", "changed", OLD_URL, NEW_URL)))
    [change] = json.loads(render.as_json(plan))["changes"]
    assert change["diffs"] == [{"path": "redirection", "kind": "changed", "old": OLD_URL, "new": NEW_URL}]
