"""Editor help: yaml-language-server shows a property's ``description`` on hover and in
completion, so every property of every published schema has one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from repos import PROJECT

from engine.config.models import MODELS

SCHEMAS = PROJECT / "schemas"


def properties(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every ``properties`` entry anywhere in a schema (``$defs``, branches, items), with its path."""
    if isinstance(node, dict):
        for name, sub in (node.get("properties") or {}).items():
            yield f"{path}/properties/{name}", sub
        for key, value in node.items():
            yield from properties(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from properties(item, f"{path}/{index}")


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_every_property_of_the_published_schema_has_a_description(kind):
    schema = json.loads((SCHEMAS / f"{kind}.schema.json").read_text(encoding="utf-8"))
    found = list(properties(schema))
    assert found, f"{kind}: no properties found; is the walker looking in the right place?"
    missing = [path for path, sub in found if not (isinstance(sub, dict) and str(sub.get("description", "")).strip())]
    assert missing == [], f"schemas/{kind}.schema.json: properties without a description: {missing}"


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_examples_are_lists_of_values_the_property_accepts(kind):
    """``examples`` is a JSON Schema array; each example must itself be valid for its property."""
    from jsonschema import Draft202012Validator

    schema = json.loads((SCHEMAS / f"{kind}.schema.json").read_text(encoding="utf-8"))
    checked = 0
    for path, sub in properties(schema):
        if not isinstance(sub, dict) or "examples" not in sub:
            continue
        assert isinstance(sub["examples"], list) and sub["examples"], path
        standalone = {**{k: v for k, v in sub.items() if k != "examples"}, "$defs": schema.get("$defs", {})}
        validator = Draft202012Validator(standalone, format_checker=Draft202012Validator.FORMAT_CHECKER)
        for example in sub["examples"]:
            assert not list(validator.iter_errors(example)), f"{kind} {path}: example {example!r} is invalid"
            checked += 1
    assert checked > 0


def test_the_walker_finds_nested_properties():
    schema = {"properties": {"a": {"description": "x"}}, "$defs": {"B": {"properties": {"c": {}}}}}
    assert [path for path, _ in properties(schema)] == ["/properties/a", "/$defs/B/properties/c"]
