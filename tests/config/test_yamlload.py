"""The YAML loader reads files as a person means them, and cannot be blown up."""

from __future__ import annotations

import datetime as dt
import time
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import yamlload
from engine.config.yamlload import YamlProblem


def load(text: str):
    return yamlload.load(text.encode())


def problem(raw: bytes) -> YamlProblem:
    with pytest.raises(YamlProblem) as caught:
        yamlload.load(raw)
    return caught.value


def test_unquoted_times_are_strings_not_sexagesimal_integers():
    data = load("start: 18:00\nfinish: 9:30\nquoted: '18:00'\n")
    assert data == {"start": "18:00", "finish": "9:30", "quoted": "18:00"}


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "y", "n", "Yes", "NO", "On", "OFF"])
def test_yaml11_booleans_are_words(word):
    assert load(f"value: {word}\n") == {"value": word}


def test_true_false_null_numbers_keep_their_meaning():
    data = load("a: true\nb: False\nc: null\nd: ~\ne:\nf: 42\ng: -1.5\nh: 0x1f\ni: 0o17\nj: 1e3\n")
    assert data == {"a": True, "b": False, "c": None, "d": None, "e": None, "f": 42, "g": -1.5, "h": 31, "i": 15, "j": 1000.0}


def test_unquoted_dates_are_dates_and_quoted_dates_are_text():
    data = load("start: 2026-12-01\nquoted: '2026-12-01'\nwhen: 2026-12-01 10:30:00Z\n")
    assert data["start"] == dt.date(2026, 12, 1) and type(data["start"]) is dt.date
    assert data["quoted"] == "2026-12-01"
    assert data["when"] == dt.datetime(2026, 12, 1, 10, 30, tzinfo=dt.timezone.utc)


def test_an_impossible_date_is_a_located_syntax_problem():
    found = problem(b"name: x\nstart: 2026-02-30\n")
    assert (found.code, found.line, found.column) == ("yaml-syntax", 2, 8)
    assert "2026-02-30" in found.message


def test_duplicate_keys_are_reported_at_the_repeated_key():
    parsed = yamlload.parse("name: a\nschedule:\n  start: 1\n  start: 2\nname: b\n")
    found = [(p.code, p.line, p.column) for p in parsed.duplicates]
    assert found == [("duplicate-key", 4, 3), ("duplicate-key", 5, 1)]
    assert problem(b"a: 1\na: 2\n").code == "duplicate-key"


BILLION_LAUGHS = b"""\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_billion_laughs_is_refused_quickly_with_bounded_memory():
    tracemalloc.start()
    began = time.monotonic()
    found = problem(BILLION_LAUGHS)
    elapsed = time.monotonic() - began
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert found.code == "yaml-syntax"
    assert "alias" in found.message
    assert elapsed < 1.0  # nothing was expanded
    assert peak < 5_000_000  # a few hundred nodes, not 10^9 strings
    assert len(found.message) < 200  # the expansion is never printed


def test_recursive_alias_is_refused():
    assert "refers to itself" in problem(b"a: &a [1, *a]\n").message


def test_small_aliases_still_work():
    assert load("base: &w {start: '09:00', finish: '12:00'}\nwindows: [*w]\n")["windows"] == [
        {"start": "09:00", "finish": "12:00"}
    ]


def test_binary_file_is_a_syntax_problem():
    assert problem(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR").code == "yaml-syntax"


def test_non_utf8_file_is_a_syntax_problem_with_location():
    found = problem("name: caf\xe9\n".encode("latin-1"))
    assert found.code == "yaml-syntax" and "UTF-8" in found.message
    assert (found.line, found.column) == (1, 10)


def test_utf8_bom_is_accepted():
    assert load("\ufeffname: x\n") == {"name": "x"}


def test_several_documents_in_one_file_are_refused():
    assert "more than one" in problem(b"a: 1\n---\nb: 2\n").message


@pytest.mark.parametrize("text", ["a: !!binary aGk=\n", "a: !custom x\n", "a: !!set {x}\n", "? [1, 2]\n: x\n"])
def test_unsupported_tags_and_complex_keys_are_refused(text):
    assert problem(text.encode()).code == "yaml-syntax"


def test_locate_points_at_values_and_keys():
    parsed = yamlload.parse("name: x\nschedule:\n  windows:\n    - {start: '09:00', finish: '11:00'}\n")
    assert yamlload.locate(parsed.root, ("schedule", "windows", 0, "finish")) == (4, 32)
    assert yamlload.locate(parsed.root, ("schedule",), key=True) == (2, 1)
    # a missing leaf points at its nearest existing parent
    assert yamlload.locate(parsed.root, ("schedule", "recurrence")) == (3, 3)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_load_or_give_a_located_problem(raw):
    try:
        yamlload.load(raw)
    except YamlProblem as found:
        assert found.code in ("yaml-syntax", "duplicate-key")
        assert found.line >= 1 and found.column >= 1 and found.message
