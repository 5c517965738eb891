"""JSON Schemas (Draft 2020-12), generated from the pydantic models.

The models are the single source of truth. ``python -m engine.config.schemas --write``
regenerates ``schemas/<kind>.schema.json``; a test fails when a committed file drifts.
Validation uses these same generated schemas with ``jsonschema`` and its format checker.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path
from typing import Any

from pydantic.json_schema import GenerateJsonSchema

from engine.config.models import MODELS

DRAFT = "https://json-schema.org/draft/2020-12/schema"

DESCRIPTIONS = {
    "platform": "platform.yaml: sites, providers, policies, state and user directory",
    "template": "templates/<template-id>.yaml: a message template",
    "audience": "audiences/<audience-id>.yaml: who a task reaches",
    "creative": "creatives/<creative-id>.yaml: the text of a notification",
    "campaign": "campaigns/<campaign-id>/campaign.yaml: a campaign",
    "task": "campaigns/<campaign-id>/<task-id>.yaml: who gets which notification, on which channel, when",
}


class _Generator(GenerateJsonSchema):
    """Optional fields are simply absent in YAML, so ``null`` is not offered as a value."""

    def nullable_schema(self, schema: Any) -> dict[str, Any]:
        return self.generate_inner(schema["schema"])

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def _tidy(node: Any) -> Any:
    if isinstance(node, dict):
        node = _keys_by_pattern(node)
        return {key: _tidy(value) for key, value in node.items() if not (key == "default" and value is None)}
    if isinstance(node, list):
        return [_tidy(item) for item in node]
    return node


def _keys_by_pattern(node: dict[str, Any]) -> dict[str, Any]:
    """A mapping whose keys must match a pattern (``dict[Id, Site]``) as ``propertyNames``.

    pydantic writes it as ``patternProperties`` alone, which lets any other key through
    (``sites: {PH Site: ...}`` was accepted); ``propertyNames`` + ``additionalProperties``
    refuses it and names the key.
    """
    patterns = node.get("patternProperties")
    if not patterns or len(patterns) != 1 or "properties" in node or "additionalProperties" in node:
        return node
    ((pattern, values),) = patterns.items()
    rest = {key: value for key, value in node.items() if key != "patternProperties"}
    return {**rest, "propertyNames": {"pattern": pattern}, "additionalProperties": values}


@cache
def schema_for(kind: str) -> dict[str, Any]:
    """The JSON Schema of one resource kind."""
    generated = MODELS[kind].model_json_schema(schema_generator=_Generator, by_alias=True)
    body = _tidy(generated)
    body.pop("title", None)
    return {"$schema": DRAFT, "title": kind, "description": DESCRIPTIONS[kind], **body}


def schema_text(kind: str) -> str:
    return json.dumps(schema_for(kind), indent=2, ensure_ascii=False) + "\n"


_ANNOTATIONS = frozenset({"title", "description", "default", "discriminator", "examples"})


def _compact(node: Any, defs: dict[str, Any], inlining: tuple[str, ...] = ()) -> Any:
    """The same constraints with local ``$ref``s inlined and annotations dropped.

    jsonschema spends a third of its time resolving references and skipping annotation
    keywords; validating 20,000 files makes that worth removing. (No model is recursive.)
    """
    if isinstance(node, list):
        return [_compact(item, defs, inlining) for item in node]
    if not isinstance(node, dict):
        return node
    compact: dict[str, Any] = {}
    if "discriminator" in node and "oneOf" in node:
        node = _discriminated(node, defs)
    reference = node.get("$ref", "")
    if reference.startswith("#/$defs/"):
        name = reference.rsplit("/", 1)[-1]
        if name in inlining:
            raise ValueError(f"recursive schema definition {name!r} cannot be inlined")
        target = _compact(defs[name], defs, inlining + (name,))
        if all(key in _ANNOTATIONS or key == "$ref" for key in node):
            return target
        compact["allOf"] = [target]
    for key, value in node.items():
        if key in _ANNOTATIONS or key in ("$defs", "$ref"):
            continue
        if key in ("properties", "patternProperties", "dependentSchemas"):
            compact[key] = {name: _compact(sub, defs, inlining) for name, sub in value.items()}
        else:
            compact[key] = _compact(value, defs, inlining)
    return compact


def _discriminated(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """A discriminated ``oneOf`` as ``if``/``then`` on the discriminator: the same constraint.

    Each branch requires a distinct constant for the discriminator, so exactly one branch
    can match, and it is the one the discriminator names; checking only that branch spares
    jsonschema from validating (and building errors for) every other branch.
    """
    field = node["discriminator"]["propertyName"]
    rest = {key: value for key, value in node.items() if key not in ("oneOf", "discriminator")}
    values, branches = [], []
    for branch in node["oneOf"]:
        target = defs[branch["$ref"].rsplit("/", 1)[-1]] if "$ref" in branch else branch
        value = target["properties"][field]["const"]
        values.append(value)
        branches.append({"if": {"properties": {field: {"const": value}}, "required": [field]}, "then": branch})
    return {
        **rest,
        "type": "object",
        "required": [field],
        "properties": {field: {"enum": values}},
        "allOf": branches,
    }


def _canonical(value: Any) -> Any:
    """A hashable form in which two values are equal exactly when JSON Schema calls them equal."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("number", value)  # 1 == 1.0, and they hash alike
    if isinstance(value, str):
        return ("text", str(value))
    if isinstance(value, list):
        return ("list", tuple(_canonical(item) for item in value))
    if isinstance(value, dict):
        return ("mapping", frozenset((str(key), _canonical(item)) for key, item in value.items()))
    return ("other", repr(value))


def repeated_items(items: list) -> list:
    """The items of a list that repeat an earlier one (JSON Schema equality), in linear time."""
    seen: set = set()
    repeated = []
    for item in items:
        key = _canonical(item)
        if key in seen:
            repeated.append(item)
        else:
            seen.add(key)
    return repeated


def _unique_items(validator: Any, unique: bool, instance: Any, schema: Any) -> Any:
    """``uniqueItems`` in linear time: jsonschema's own compares every pair of items it cannot
    sort (mappings), minutes for a hostile list of 20,000."""
    from jsonschema.exceptions import ValidationError

    if unique and validator.is_type(instance, "array") and repeated_items(instance):
        yield ValidationError(f"{instance!r} has non-unique elements")


@cache
def validator_for(kind: str):
    """A Draft 2020-12 validator, with the format checker, for one kind's schema."""
    # Our schemas use only the "date" format. When rfc3987-syntax happens to be installed,
    # jsonschema imports it for IRI formats, and it compiles a grammar that takes most of a
    # second; keep it out of this process.
    sys.modules.setdefault("rfc3987_syntax", None)
    from jsonschema import Draft202012Validator, validators

    schema = schema_for(kind)
    linear = validators.extend(Draft202012Validator, {"uniqueItems": _unique_items})
    return linear(_compact(schema, schema.get("$defs", {})), format_checker=Draft202012Validator.FORMAT_CHECKER)


def write_schemas(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in MODELS:
        path = folder / f"{kind}.schema.json"
        path.write_text(schema_text(kind), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover - developer tool
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("schemas")
    if sys.argv[1:2] == ["--write"]:
        for path in write_schemas(target):
            print(f"wrote {path}")
    else:
        print("usage: python -m engine.config.schemas --write [FOLDER]")
