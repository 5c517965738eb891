"""JSON Schema validation whose findings a marketer can act on.

``jsonschema`` says *what* failed; this module says it in the words of the file
("schedule.windows[1].start: '25:00' is not a time of day (HH:MM)") and keeps the
JSON path so the caller can point at the exact line and column.

Work stays bounded whatever the document: jsonschema writes ``repr(instance)`` into every
error it creates, eagerly, so the document it sees wears reprs of bounded size
(:func:`bounded`); its ``uniqueItems`` runs in linear time (see ``engine.config.schemas``);
numbers JSON cannot carry (``.inf``, ``.nan``) or that no field needs (beyond ±2**53) are
``schema`` problems found by a walk of their own, as JSON Schema cannot say "finite"; and every
message is cut to :data:`MESSAGE_MAX` characters.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from engine.config.names import (
    ID_PATTERN,
    NAME_MAX,
    NUMBER_MAX,
    TASK_NAME_MAX,
    TIME_PATTERN,
    USER_ID_PATTERN,
    VARIABLE_PATTERN,
)
from engine.config.schemas import repeated_items, schema_for, validator_for

MESSAGE_MAX = 500
"""Characters of one finding's message; the rest is cut with "…"."""
_SHOWN = 60  # characters of a text quoted in a message
_SHOWN_ITEMS = 3  # items of a list or mapping quoted in a message
_SUGGEST_MAX = 20  # unknown fields in one mapping that still get a "did you mean"

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
    USER_ID_PATTERN: "a user id (1 to 32 characters, no spaces or control characters)",
    VARIABLE_PATTERN: "a variable name (letters, digits and '_', starting with a letter)",
}
_ID_PATTERNS = frozenset({ID_PATTERN, USER_ID_PATTERN})  # a value that misses them is ``invalid-id``


# --- documents whose reprs are bounded -------------------------------------------------------


class _Text(str):
    """A long text whose ``repr`` quotes only its beginning."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(str.__getitem__(self, slice(0, _SHOWN))) + f"... ({len(self):,} characters)"


class _List(list):
    """A list whose ``repr`` shows its first items only."""

    __slots__ = ()

    def __repr__(self) -> str:
        shown = ", ".join(repr(item) for item in list.__getitem__(self, slice(0, _SHOWN_ITEMS)))
        more = f", ... ({len(self):,} items)" if len(self) > _SHOWN_ITEMS else ""
        return f"[{shown}{more}]"


class _Mapping(dict):
    """A mapping whose ``repr`` shows its first fields only."""

    __slots__ = ()

    def __repr__(self) -> str:
        items = [f"{key!r}: {value!r}" for _, (key, value) in zip(range(_SHOWN_ITEMS), self.items())]
        more = f", ... ({len(self):,} fields)" if len(self) > _SHOWN_ITEMS else ""
        return "{" + ", ".join(items) + more + "}"


def bounded(value: Any) -> Any:
    """The same document (equal, same types to jsonschema) whose every ``repr`` is short.

    A text shared by many aliases is wrapped once. (An integer's repr is at most 4,300 digits,
    Python's limit for reading one, and YAML aliases cannot multiply it beyond the file's size.)
    """
    memo: dict[int, _Text] = {}

    def wrap(item: Any) -> Any:
        if isinstance(item, str):
            if len(item) <= _SHOWN:
                return item
            known = memo.get(id(item))
            if known is None:
                known = memo[id(item)] = _Text(item)
            return known
        if isinstance(item, dict):
            return _Mapping((wrap(key), wrap(child)) for key, child in item.items())
        if isinstance(item, list):
            return _List(wrap(child) for child in item)
        return item

    return wrap(value)


def number_findings(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[SchemaFinding]:
    """Numbers no field takes: ``.inf`` and ``.nan`` (JSON has neither) and integers beyond ±2**53.

    Comparing them, storing them or printing them is where ``plan`` used to crash, and JSON
    Schema cannot say "finite" (``.nan`` passes every ``minimum``), so they are refused here.
    """
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, bool):
            continue
        if isinstance(item, float) and not math.isfinite(item):
            words = "not a number" if math.isnan(item) else "infinite"
            yield SchemaFinding(where, f"{_prefix(where)}{item!r} is {words}; write a finite number")
        elif isinstance(item, int) and not -NUMBER_MAX <= item <= NUMBER_MAX:
            yield SchemaFinding(
                where, f"{_prefix(where)}a number of {len(str(abs(item)))} digits is too large; at most {NUMBER_MAX:,}"
            )
        elif isinstance(item, dict):
            stack.extend((child, where + (key,)) for key, child in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((child, where + (index,)) for index, child in reversed(list(enumerate(item))))


@dataclass(frozen=True, slots=True)
class SchemaFinding:
    path: tuple[str | int, ...]
    message: str
    code: str = "schema"
    at_key: bool = False  # point at the key (unknown field) rather than the value


def show_path(path: tuple[str | int, ...]) -> str:
    text = ""
    for step in path:
        step = step if isinstance(step, int) else _short(str(step))
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text


def _prefix(path: tuple[str | int, ...]) -> str:
    where = show_path(path)
    return f"{where}: " if where else ""


def _short(text: str, limit: int = _SHOWN) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _value(value: Any) -> str:
    if isinstance(value, str):
        return repr(_short(str(value)))
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    return _short(repr(value))


def _bounded_message(message: str) -> str:
    return message if len(message) <= MESSAGE_MAX else message[: MESSAGE_MAX - 1] + "…"


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
    for kind, name in ((str, "string"), (float, "number"), (list, "array"), (dict, "object")):
        if isinstance(value, kind):
            return name
    return "null"


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
        unknown = [name for name in instance if name not in allowed]
        suggest = len(unknown) <= _SUGGEST_MAX  # a hint per typo, not per key of a dumped mapping
        for name in unknown:
            hint = difflib.get_close_matches(str(name), allowed, n=1) if suggest and len(name) <= _SHOWN else []
            suggestion = f"; did you mean {hint[0]!r}?" if hint else f"; allowed: {', '.join(allowed)}"
            yield SchemaFinding(path + (name,), f"{prefix}unknown field {_value(name)}{suggestion}", at_key=True)
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
        short = isinstance(instance, (str, int, float)) and len(str(instance)) <= _SHOWN
        hint = difflib.get_close_matches(str(instance), [str(o) for o in options], n=1) if short else []
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        yield SchemaFinding(path, f"{prefix}{_value(instance)} is not one of: {', '.join(map(str, options))}{suggestion}")
        return
    if keyword == "pattern":
        words = _PATTERN_WORDS.get(error.validator_value, f"text matching {error.validator_value}")
        code = "invalid-id" if error.validator_value in _ID_PATTERNS else "schema"
        if list(error.absolute_schema_path)[-2:] == ["propertyNames", "pattern"]:  # a key of the mapping
            yield SchemaFinding(path + (instance,), f"{prefix}key {_value(instance)} is not {words}", code, at_key=True)
        else:
            yield SchemaFinding(path, f"{prefix}{_value(instance)} is not {words}", code=code)
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
        repeated = repeated_items(instance)
        shown = ", ".join(map(_value, repeated[:_SHOWN_ITEMS])) + (", ..." if len(repeated) > _SHOWN_ITEMS else "")
        yield SchemaFinding(path, f"{prefix}lists {shown} more than once")
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
            how = "exactly one" if keyword == "oneOf" else "at least one"
            yield SchemaFinding(path, f"{prefix}needs {how} of {', '.join(names)} ({what})")
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
    """Every schema problem of one document (already in its JSON view), each message bounded."""
    findings: dict[SchemaFinding, None] = dict.fromkeys(number_findings(instance))
    numbers = {finding.path for finding in findings}
    for error in validator_for(kind).iter_errors(bounded(instance)):
        findings.update(dict.fromkeys(found for found in _findings(error, kind) if found.path not in numbers))
    return [
        finding if len(finding.message) <= MESSAGE_MAX else SchemaFinding(
            finding.path, _bounded_message(finding.message), finding.code, finding.at_key
        )
        for finding in findings
    ]
