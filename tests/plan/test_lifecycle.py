"""Every (wanted, before, changed, tested) combination of the task lifecycle, against a table
written out by hand (engine.plan.lifecycle; SPEC section 5)."""

from __future__ import annotations

import itertools

import pytest

from engine.plan import lifecycle

WANTED = ("active", "paused")
BEFORE = (None, "draft", "testing", "running", "paused", "completed")
CHANGED = (False, True)
TESTED = (False, True)

# (wanted, before, changed, tested) -> (status after, needs a passing pilot test, pilot tests looked up)
R, P, T, D = "running", "paused", "testing", "draft"
EXPECTED = {
    # active: always running; a pilot test is needed unless it ran with this very content
    ("active", None, False, False): (R, True, True),
    ("active", None, False, True): (R, True, True),
    ("active", None, True, False): (R, True, True),
    ("active", None, True, True): (R, True, True),
    ("active", "draft", False, False): (R, True, True),
    ("active", "draft", False, True): (R, True, True),
    ("active", "draft", True, False): (R, True, True),
    ("active", "draft", True, True): (R, True, True),
    ("active", "testing", False, False): (R, True, True),
    ("active", "testing", False, True): (R, True, True),
    ("active", "testing", True, False): (R, True, True),
    ("active", "testing", True, True): (R, True, True),
    ("active", "running", False, False): (R, False, False),
    ("active", "running", False, True): (R, False, False),
    ("active", "running", True, False): (R, True, True),
    ("active", "running", True, True): (R, True, True),
    ("active", "paused", False, False): (R, False, False),
    ("active", "paused", False, True): (R, False, False),
    ("active", "paused", True, False): (R, True, True),
    ("active", "paused", True, True): (R, True, True),
    ("active", "completed", False, False): (R, True, True),
    ("active", "completed", False, True): (R, True, True),
    ("active", "completed", True, False): (R, True, True),
    ("active", "completed", True, True): (R, True, True),
    # paused: never needs a test; paused once it ran, else draft or testing by its pilot test
    ("paused", None, False, False): (D, False, True),
    ("paused", None, False, True): (T, False, True),
    ("paused", None, True, False): (D, False, True),
    ("paused", None, True, True): (T, False, True),
    ("paused", "draft", False, False): (D, False, True),
    ("paused", "draft", False, True): (T, False, True),
    ("paused", "draft", True, False): (D, False, True),
    ("paused", "draft", True, True): (T, False, True),
    ("paused", "testing", False, False): (T, False, False),
    ("paused", "testing", False, True): (T, False, False),
    ("paused", "testing", True, False): (D, False, True),
    ("paused", "testing", True, True): (T, False, True),
    ("paused", "running", False, False): (P, False, False),
    ("paused", "running", False, True): (P, False, False),
    ("paused", "running", True, False): (P, False, False),
    ("paused", "running", True, True): (P, False, False),
    ("paused", "paused", False, False): (P, False, False),
    ("paused", "paused", False, True): (P, False, False),
    ("paused", "paused", True, False): (P, False, False),
    ("paused", "paused", True, True): (P, False, False),
    ("paused", "completed", False, False): (D, False, True),
    ("paused", "completed", False, True): (T, False, True),
    ("paused", "completed", True, False): (D, False, True),
    ("paused", "completed", True, True): (T, False, True),
}

COMBINATIONS = list(itertools.product(WANTED, BEFORE, CHANGED, TESTED))


def test_the_table_covers_every_combination() -> None:
    assert set(EXPECTED) == set(COMBINATIONS)


@pytest.mark.parametrize("combination", COMBINATIONS, ids=lambda c: "-".join(map(str, c)))
def test_lifecycle(combination: tuple) -> None:
    wanted, before, changed, tested = combination
    after, needs, looked_up = EXPECTED[combination]
    assert lifecycle.target_status(wanted, before, changed, tested) == after
    assert lifecycle.needs_test(wanted, before, changed) is needs
    assert lifecycle.pilot_test_matters(wanted, before, changed) is looked_up


@pytest.mark.parametrize("combination", COMBINATIONS, ids=lambda c: "-".join(map(str, c)))
def test_when_no_lookup_is_made_the_pilot_test_cannot_change_the_outcome(combination: tuple) -> None:
    wanted, before, changed, tested = combination
    if not lifecycle.pilot_test_matters(wanted, before, changed):
        assert lifecycle.target_status(wanted, before, changed, tested) == lifecycle.target_status(
            wanted, before, changed, not tested
        )


# (wanted, status) -> already where the file wants it, when nothing it is made of changed
SETTLED = {
    ("active", "draft"): False,
    ("active", "testing"): False,
    ("active", "running"): True,
    ("active", "paused"): False,
    ("active", "completed"): False,
    ("paused", "draft"): False,
    ("paused", "testing"): True,
    ("paused", "running"): False,
    ("paused", "paused"): True,
    ("paused", "completed"): False,
}


@pytest.mark.parametrize("wanted, status", list(itertools.product(WANTED, BEFORE[1:])))
def test_settled(wanted: str, status: str) -> None:
    assert lifecycle.settled(wanted, status) is SETTLED[wanted, status]
    if SETTLED[wanted, status]:  # settled means: the unchanged task keeps its status, with no test needed
        assert lifecycle.target_status(wanted, status, False, False) == status
        assert not lifecycle.needs_test(wanted, status, False)
