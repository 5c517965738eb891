"""JSON Schema validation whose findings a marketer can act on.

``jsonschema`` says *what* failed; this module says it in the words of the file
("schedule.windows[1].start: '25:00' is not a time of day (HH:MM)") and keeps the
JSON path so the caller can point at the exact line and column.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from engine.config.names import ID_PATTERN, NAME_MAX, TASK_NAME_MAX, TIME_PATTERN, USER_ID_PATTERN, VARIABLE_PATTERN
from engine.config.schemas import schema_for, validator_for

_TYPE_WORDS = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping of fields",
    "null": "empty",
}

_PATTERN_WORDS = {
    ID_PATTERN: "an id (lowercase letters, digits and '-', starting with a letter or digit, at most 63 characters)",
    TIME_PATTERN: "a time of day written HH:MM (00:00 to 23:59)",
    USER_ID_PATTERN: "a user id (1 to 32 characters, no spaces)",
    VARIABLE_PATTERN: "a variable name (letters, digits and '_', starting with a letter)",
}


@dataclass(frozen=True, slots=True)
class SchemaFinding:
    path: tuple[str | int, ...]
    message: str
    code: str = "schema"
    at_key: bool = False  # point at the key (unknown field) rather than the value


def show_path(path: tuple[str | int, ...]) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text


def _value(value: Any) -> str:
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else repr(value[:57] + "...")
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    return repr(value)


def _name_limit(path: tuple, kind: str) -> int | None:
    if path == ("name",):
        return TASK_NAME_MAX if kind == "task" else NAME_MAX
    return None


def _resolve(branch: dict, kind: str) -> dict:
    reference = branch.get("$ref", "")
    if reference.startswith("#/$defs/"):
        return schema_for(kind)["$defs"].get(reference.rsplit("/", 1)[-1], {})
    return branch


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {str: "string", float: "number", list: "array", dict: "object"}.get(type(value), "null")


def _discriminator_options(branches: list[dict]) -> list[str]:
    options = [branch.get("properties", {}).get("type", {}).get("const") for branch in branches]
    return options if all(options) else []


def _branch_errors(error, kind: str) -> list:
    """For anyOf/oneOf, the errors of the branch the author most likely meant."""
    from jsonschema.exceptions import best_match

    instance = error.instance
    context = list(error.context or ())
    branches = [_resolve(branch, kind) for branch in error.validator_value]

    def errors_of(index: int) -> list:
        return [sub for sub in context if sub.relative_schema_path and sub.relative_schema_path[0] == index]

    if isinstance(instance, dict) and "type" in instance:
        for index, branch in enumerate(branches):
            if branch.get("properties", {}).get("type", {}).get("const") == instance["type"]:
                return errors_of(index)
    json_type = _json_type(instance)
    typed = [index for index, branch in enumerate(branches) if branch.get("type") == json_type]
    if len(typed) == 1:
        return errors_of(typed[0])
    best = best_match(context)
    return [best] if best is not None else []


def _findings(error, kind: str) -> Iterator[SchemaFinding]:
    path = tuple(error.absolute_path)
    where = show_path(path)
    prefix = f"{where}: " if where else ""
    keyword = error.validator
    instance = error.instance

    if keyword == "required":
        # jsonschema reports one error per missing field, each carrying the whole list
        missing = [name for name in error.validator_value if name not in instance]
        for name in missing:
            yield SchemaFinding(path, f"{prefix}missing required field {name!r}")
        return
    if keyword == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        for name in instance:
            if name not in allowed:
                hint = difflib.get_close_matches(str(name), allowed, n=1)
                suggestion = f"; did you mean {hint[0]!r}?" if hint else f"; allowed: {', '.join(allowed)}"
                yield SchemaFinding(path + (name,), f"{prefix}unknown field {name!r}{suggestion}", at_key=True)
        return
    if keyword == "type":
        expected = error.validator_value
        words = " or ".join(_TYPE_WORDS.get(t, t) for t in ([expected] if isinstance(expected, str) else expected))
        if path == () and instance is None:
            yield SchemaFinding(path, "the file is empty; it must be a mapping of fields")
        else:
            yield SchemaFinding(path, f"{prefix}{_value(instance)} must be {words}")
        return
    if keyword in ("enum", "const"):
        options = error.validator_value if keyword == "enum" else [error.validator_value]
        hint = difflib.get_close_matches(str(instance), [str(o) for o in options], n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        yield SchemaFinding(path, f"{prefix}{_value(instance)} is not one of: {', '.join(map(str, options))}{suggestion}")
        return
    if keyword == "pattern":
        words = _PATTERN_WORDS.get(error.validator_value, f"text matching {error.validator_value}")
        yield SchemaFinding(path, f"{prefix}{_value(instance)} is not {words}")
        return
    if keyword == "format":
        words = {"date": "a date (YYYY-MM-DD)"}.get(error.validator_value, f"a valid {error.validator_value}")
        yield SchemaFinding(path, f"{prefix}{_value(instance)} is not {words}")
        return
    if keyword == "maxLength":
        limit = _name_limit(path, kind)
        if limit is not None:
            yield SchemaFinding(
                path,
                f"name is {len(instance)} characters long; a {kind} name may have at most {limit}",
                code="name-too-long",
            )
        else:
            yield SchemaFinding(path, f"{prefix}is {len(instance)} characters long; at most {error.validator_value}")
        return
    if keyword == "minLength":
        yield SchemaFinding(path, f"{prefix}must not be empty")
        return
    if keyword == "minItems":
        count = error.validator_value
        yield SchemaFinding(path, f"{prefix}needs at least {count} item{'s' if count != 1 else ''}")
        return
    if keyword == "uniqueItems":
        seen, repeated = [], []
        for item in instance:
            (repeated if item in seen else seen).append(item)
        yield SchemaFinding(path, f"{prefix}lists {', '.join(map(_value, repeated))} more than once")
        return
    if keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        relation = {
            "minimum": "at least",
            "maximum": "at most",
            "exclusiveMinimum": "more than",
            "exclusiveMaximum": "less than",
        }[keyword]
        yield SchemaFinding(path, f"{prefix}{_value(instance)} must be {relation} {error.validator_value}")
        return
    if keyword in ("minProperties", "maxProperties"):
        if isinstance(instance, dict) and set(instance) <= {"any", "all"}:
            yield SchemaFinding(path, f"{prefix}write either 'any:' (groups) or 'all:' (conditions), not both")
        elif "where" in path:
            yield SchemaFinding(
                path,
                f"{prefix}a condition is 'attr' plus exactly one of eq, ne, in, not_in, gt, gte, lt, lte, exists",
            )
        else:
            relation = "at least" if keyword == "minProperties" else "at most"
            yield SchemaFinding(path, f"{prefix}needs {relation} {error.validator_value} fields")
        return
    if keyword == "dependentRequired":
        for name, needed in error.validator_value.items():
            if name in instance:
                yield SchemaFinding(path, f"{prefix}{name!r} needs {', '.join(map(repr, needed))}")
        return
    if keyword in ("oneOf", "anyOf"):
        branches = error.validator_value
        if all(set(branch) == {"required"} for branch in branches):
            names = [branch["required"][0] for branch in branches]
            present = [name for name in names if isinstance(instance, dict) and name in instance]
            what = "has none" if not present else f"has {', '.join(present)}"
            yield SchemaFinding(path, f"{prefix}needs exactly one of {', '.join(names)} ({what})")
            return
        options = _discriminator_options([_resolve(branch, kind) for branch in branches])
        if options and isinstance(instance, dict) and instance.get("type") not in options:
            if "type" not in instance:
                yield SchemaFinding(path, f"{prefix}missing required field 'type' (one of: {', '.join(options)})")
            else:
                yield SchemaFinding(
                    path + ("type",), f"{where}.type: {_value(instance['type'])} is not one of: {', '.join(options)}"
                )
            return
        chosen = _branch_errors(error, kind)
        if chosen:
            for sub in chosen:
                yield from _findings(sub, kind)
            return
    yield SchemaFinding(path, f"{prefix}{error.message}")


def schema_findings(kind: str, instance: Any) -> list[SchemaFinding]:
    """Every schema problem of one document (already in its JSON view)."""
    validator = validator_for(kind)
    findings: dict[SchemaFinding, None] = {}
    for error in validator.iter_errors(instance):
        findings.update(dict.fromkeys(_findings(error, kind)))
    return list(findings)
