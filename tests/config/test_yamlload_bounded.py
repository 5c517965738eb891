"""Hostile YAML costs time linear in its size: problems are located through an index, and aliases
cannot multiply a long text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bounded_run import campaigns_bounded
from hypothesis import given, settings
from hypothesis import strategies as st
from repos import EXAMPLE_LIVE_NOW, example_repo, write
from yaml.nodes import MappingNode

from engine.config import yamlload

CAMPAIGN = "campaigns/december-flash-sale/campaign.yaml"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return example_repo(tmp_path / "repo")


def test_a_problem_on_each_of_100000_keys_is_located_and_reported(repo):
    """190 s before: each unknown key's position was found by rescanning the whole mapping."""
    keys = 100_000
    write(repo, CAMPAIGN, "name: x\ndescription: y\n" + "".join(f"k{i}: 0\n" for i in range(keys)))
    run = campaigns_bounded("validate", "--now", EXAMPLE_LIVE_NOW, "--repo", str(repo), "--format", "json", "--no-cache", seconds=180)
    assert not run.crashed and run.code == 1, run.err[-2000:]
    problems = json.loads(run.out)["problems"]
    assert len(problems) == keys
    located = {problem["message"].split("'")[1]: (problem["line"], problem["column"]) for problem in problems}
    assert located["k0"] == (3, 1) and located["k54321"] == (54324, 1) and located[f"k{keys - 1}"] == (keys + 2, 1)


class _CountingPairs(list):
    """A mapping node's (key, value) list that counts the pairs looked at."""

    looked = 0

    def __iter__(self):
        for pair in super().__iter__():
            _CountingPairs.looked += 1
            yield pair

    def __reversed__(self):
        for pair in super().__reversed__():
            _CountingPairs.looked += 1
            yield pair


@pytest.mark.parametrize("keys", [1_000, 10_000])
def test_locating_every_key_of_a_mapping_looks_at_each_pair_a_bounded_number_of_times(keys):
    root = yamlload.parse("".join(f"k{i}: {i}\n" for i in range(keys))).root
    root.value = _CountingPairs(root.value)
    _CountingPairs.looked = 0
    for i in range(keys):
        assert yamlload.locate(root, (f"k{i}",)) == (i + 1, 4 + len(str(i)))
        assert yamlload.locate(root, (f"k{i}",), key=True) == (i + 1, 1)
    assert _CountingPairs.looked <= 2 * keys  # indexed once, not rescanned per lookup


def _scan(root, path, key=False):
    """The definition: the last pair with that key (as the loaded data keeps it), no index."""
    node = root
    for index, step in enumerate(path):
        last = index == len(path) - 1
        if isinstance(node, MappingNode):
            found = [pair for pair in node.value if pair[0].value == step]
            if not found:
                break
            node = found[-1][0] if (key and last) else found[-1][1]
        elif isinstance(step, int) and 0 <= step < len(node.value):
            node = node.value[step]
        else:
            break
    return node.start_mark.line + 1, node.start_mark.column + 1


@settings(max_examples=60, deadline=None)
@given(
    keys=st.lists(st.sampled_from([f"k{i}" for i in range(40)]), min_size=1, max_size=60),
    probes=st.lists(st.tuples(st.sampled_from([f"k{i}" for i in range(45)]), st.integers(0, 3), st.booleans()), max_size=30),
)
def test_located_positions_are_those_of_the_last_duplicate_like_the_loaded_data(keys, probes):
    text = "".join(f"{key}: [a, b, {{x: 1}}]\n" for key in keys)
    root = yamlload.parse(text).root
    for key, index, at_key in probes:
        for path in ((key,), (key, index), (key, index, "x")):
            assert yamlload.locate(root, path, key=at_key) == _scan(root, path, key=at_key)


def test_an_aliased_long_text_in_thousands_of_failing_conditions_is_refused_before_expanding(repo):
    """5.7 GB before: every failing condition's error message carried the 790 KB text."""
    conditions = "".join("        - {attr: a, eq: *big, ne: *big}\n" for _ in range(5000))
    write(
        repo,
        "audiences/high-points-ph.yaml",
        f"name: x\nsite: ph\nx-big: &big {'A' * 790_000}\nsource:\n  where:\n    any:\n      - all:\n{conditions}",
    )
    run = campaigns_bounded("validate", "--now", EXAMPLE_LIVE_NOW, "--repo", str(repo), "--format", "json", "--no-cache", seconds=60, memory=600 << 20)
    assert not run.crashed and run.code == 1, run.err[-2000:]
    [problem] = json.loads(run.out)["problems"]
    assert (problem["file"], problem["code"]) == ("audiences/high-points-ph.yaml", "yaml-syntax")
    assert "aliases expand to more than" in problem["message"]


def test_aliases_that_repeat_a_text_beyond_what_a_file_can_hold_are_refused():
    big = "A" * 300_000
    with pytest.raises(yamlload.YamlProblem) as caught:
        yamlload.load(f"a: &t {big}\nb: [*t, *t, *t, *t]\n".encode())
    assert "KiB of text" in caught.value.message


def test_aliases_of_short_values_still_load():
    data = yamlload.load(b"w: &w {start: '09:00', finish: '11:30'}\nwindows: [*w, *w]\nname: &n Flash\nalso: *n\n")
    assert data["windows"] == [{"start": "09:00", "finish": "11:30"}] * 2 and data["also"] == "Flash"
