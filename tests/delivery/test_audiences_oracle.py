"""Audience membership against a naive Python oracle: random where rules and random audience
graphs (include / exclude of rules and lists), on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import operator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.delivery.audiences import audience_size, task_members
from engine.delivery.directory import import_users, parse_numeral
from engine.state import StateStore

CELLS = {
    "points": ["0", "1", "80", "999", "1000", "1500", "-3", "N/A", "", "", "007", "2.5", "1000.5"],
    "score": ["0.5", "2.25", "-1.5", "10", "", "1e3", "0.1"],
    "city": ["Manila", "manila", "Cebu", "São Paulo", "", "Zürich", "ab", "a", "B", "1000", "日本"],
    "code": ["007", "0", "10", "1.50", "abc", "", "true", "x'y"],
}
OPERANDS = st.one_of(
    st.sampled_from([c for cells in CELLS.values() for c in cells if c]),
    st.integers(-5, 3000),
    st.sampled_from([0.5, 2.25, 1000.0, -1.5, 0.1, 2.5]),
    st.booleans(),
    st.text(alphabet="aBcMñ0172. '", max_size=4),
)
ATTRIBUTES = st.sampled_from([*CELLS, "user_id"])


def build_directory(count: int = 48) -> list[dict[str, str]]:
    rows = []
    for n in range(count):
        row = {"user_id": f"u{n:02d}"}
        for position, (name, cells) in enumerate(CELLS.items()):
            row[name] = cells[(n * (position + 3) + n // 7) % len(cells)]
        rows.append(row)
    return rows


ROWS = build_directory()


def typed(cell: str) -> Any:
    number = parse_numeral(cell)
    return cell if number is None else number


def operand(value: Any, text_only: bool) -> tuple[str, Any]:
    if isinstance(value, bool):
        return "text", "true" if value else "false"
    if isinstance(value, (int, float)):
        return ("text", str(value) if isinstance(value, int) else repr(value)) if text_only else ("number", value)
    number = None if text_only else parse_numeral(value)
    return ("text", value) if number is None else ("number", number)


def kind_of(value: Any) -> str:
    return "number" if isinstance(value, (int, float)) else "text"


COMPARE = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}


def oracle_condition(row: dict[str, str], condition: dict[str, Any]) -> bool:
    name = condition["attr"]
    (op, arg), = [(k, v) for k, v in condition.items() if k != "attr"]
    present = name == "user_id" or row[name] != ""
    value = row["user_id"] if name == "user_id" else (typed(row[name]) if present else None)
    text_only = name == "user_id"

    def equal(x: Any) -> bool:
        kind, wanted = operand(x, text_only)
        return present and kind_of(value) == kind and value == wanted

    if op == "exists":
        return present == arg
    if op == "eq":
        return equal(arg)
    if op == "ne":
        return not equal(arg)
    if op == "in":
        return any(equal(x) for x in arg)
    if op == "not_in":
        return not any(equal(x) for x in arg)
    kind, wanted = operand(arg, text_only)
    return present and kind_of(value) == kind and COMPARE[op](value, wanted)


def oracle_where(rule: dict[str, Any]) -> set[str]:
    groups = [group["all"] for group in rule["any"]] if "any" in rule else [rule["all"]]
    return {row["user_id"] for row in ROWS if any(all(oracle_condition(row, c) for c in group) for group in groups)}


@st.composite
def conditions(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(ATTRIBUTES)
    op = draw(st.sampled_from(["eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists"]))
    if op == "exists":
        return {"attr": name, "exists": draw(st.booleans())}
    if op in ("in", "not_in"):
        return {"attr": name, op: draw(st.lists(OPERANDS, min_size=1, max_size=4))}
    if op in COMPARE:
        return {"attr": name, op: draw(OPERANDS.filter(lambda v: not isinstance(v, bool)))}
    return {"attr": name, op: draw(OPERANDS)}


@st.composite
def rules(draw: st.DrawFn) -> dict[str, Any]:
    groups = draw(st.lists(st.lists(conditions(), min_size=1, max_size=3), min_size=1, max_size=3))
    if len(groups) == 1 and draw(st.booleans()):
        return {"all": groups[0]}
    return {"any": [{"all": group} for group in groups]}


@pytest.fixture
def directory(state_store: StateStore, tmp_path: Path) -> StateStore:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["user_id", *CELLS])
    writer.writeheader()
    writer.writerows(ROWS)
    path = tmp_path / "directory.csv"
    path.write_text(buffer.getvalue())
    import_users(state_store, path)
    return state_store


def evaluate(store: StateStore, audiences: list[str], bodies: dict[str, dict]) -> list[str]:
    found = [m.user_id for batch in task_members(store, "t", {"audiences": audiences}, bodies, batch_size=7) for m in batch]
    assert audience_size(store, {"audiences": audiences}, bodies) == len(found)
    return found


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rule=rules())
def test_where_rules_match_the_oracle(directory: StateStore, rule: dict[str, Any]) -> None:
    body = {"name": "A", "site": "ph", "source": {"where": rule}}
    assert evaluate(directory, ["a"], {"a": body}) == sorted(oracle_where(rule))


# -- graphs of audiences ------------------------------------------------------------------------

USER_POOL = [row["user_id"] for row in ROWS[:12]] + ["out-a", "out-b", "zz-out"]


@st.composite
def graphs(draw: st.DrawFn) -> tuple[list[str], dict[str, dict], dict[str, set[str]]]:
    """Leaf audiences (rules, lists), then audiences including/excluding earlier ones; returns
    (task audiences, bodies, oracle member sets)."""
    bodies: dict[str, dict] = {}
    sets: dict[str, set[str]] = {}
    for n in range(draw(st.integers(1, 4))):
        name = f"leaf{n}"
        if draw(st.booleans()):
            rule = draw(rules())
            bodies[name] = {"name": name, "site": "ph", "source": {"where": rule}}
            sets[name] = oracle_where(rule)
        else:
            listed = draw(st.lists(st.sampled_from(USER_POOL), min_size=1, max_size=6, unique=True))
            bodies[name] = {"name": name, "site": "ph", "source": {"users": listed}}
            sets[name] = set(listed)
    for n in range(draw(st.integers(0, 3))):
        name = f"mix{n}"
        earlier = sorted(bodies)
        included = draw(st.lists(st.sampled_from(earlier), min_size=1, max_size=3, unique=True))
        excluded = draw(st.lists(st.sampled_from(earlier), max_size=2, unique=True))
        source: dict[str, Any] = {"include": included}
        if excluded:
            source["exclude"] = excluded
        bodies[name] = {"name": name, "site": "ph", "source": source}
        sets[name] = set().union(*(sets[i] for i in included)) - set().union(*(sets[e] for e in excluded))
    task = draw(st.lists(st.sampled_from(sorted(bodies)), min_size=1, max_size=3, unique=True))
    return task, bodies, sets


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(graph=graphs())
def test_audience_graphs_match_the_oracle(directory: StateStore, graph: tuple) -> None:
    task, bodies, sets = graph
    expected = sorted(set().union(*(sets[a] for a in task)))
    assert evaluate(directory, task, bodies) == expected
