"""Safe YAML reading that means what a person means.

Built on libyaml (PyYAML's ``CSafeLoader``) with a YAML 1.2-style resolver:

* ``18:00`` is the string "18:00" (no YAML 1.1 base-60 integers),
* ``yes``/``no``/``on``/``off`` are strings (booleans are only true/false),
* unquoted dates are :class:`datetime.date`,
* a repeated key is a ``duplicate-key`` problem,
* aliases are sized before anything is built, so a "billion laughs" file is rejected in
  microseconds without ever expanding, walking or printing the expanded structure.

The composed node tree is also how problems are located: :func:`locate` maps a JSON path
(``("schedule", "windows", 1, "start")``) to the 1-based line and column of its node. A large
mapping is indexed once, so locating every problem of a file stays linear in its size.

A syntax error says how to fix the two mistakes marketers make most: a tab in the indentation
("indent with spaces") and an unquoted value that starts with ``{{`` or ``{%`` (YAML reads a
``{`` as the start of a mapping: "put the text in quotes").
"""

from __future__ import annotations

import datetime as dt
import re
import weakref
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_FILE_BYTES = 1 << 20
MAX_NODES = 100_000  # a real resource file has a few dozen nodes
MAX_DEPTH = 64

Path = tuple[str | int, ...]


class YamlProblem(Exception):
    """A located problem with a file's YAML (code ``yaml-syntax`` or ``duplicate-key``)."""

    def __init__(self, code: str, message: str, line: int = 1, column: int = 1):
        super().__init__(message)
        self.code = code
        self.message = message
        self.line = line
        self.column = column


class Loader(yaml.CSafeLoader):
    """libyaml parser + a YAML 1.2 core-schema resolver (plus dates)."""

    yaml_implicit_resolvers: dict = {}


def _resolver(tag: str, pattern: str, first: str) -> None:
    Loader.add_implicit_resolver(tag, re.compile(pattern, re.X), list(first))


_resolver("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF")
_resolver("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""])
_resolver("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789")
_resolver(
    "tag:yaml.org,2002:float",
    r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    "-+0123456789.",
)
_resolver(
    "tag:yaml.org,2002:timestamp",
    r"""^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
    |[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?
     (?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?
     (?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$""",
    "0123456789",
)

_STR = "tag:yaml.org,2002:str"
_TIMESTAMP_RE = re.compile(
    r"^(?P<year>\d{4})-(?P<month>\d\d?)-(?P<day>\d\d?)"
    r"(?:(?:[Tt]|[ \t]+)(?P<hour>\d\d?):(?P<minute>\d\d):(?P<second>\d\d)(?:\.(?P<fraction>\d*))?"
    r"(?:[ \t]*(?P<tz>Z|(?P<tz_sign>[-+])(?P<tz_hour>\d\d?)(?::(?P<tz_minute>\d\d))?))?)?\Z"
)


def _timestamp(text: str) -> dt.date | dt.datetime:
    match = _TIMESTAMP_RE.match(text)
    if not match:
        raise ValueError(text)
    year, month, day = int(match["year"]), int(match["month"]), int(match["day"])
    if match["hour"] is None:
        return dt.date(year, month, day)
    fraction = int((match["fraction"] or "0")[:6].ljust(6, "0"))
    tzinfo = None
    if match["tz"]:
        if match["tz"] == "Z":
            tzinfo = dt.timezone.utc
        else:
            delta = dt.timedelta(hours=int(match["tz_hour"]), minutes=int(match["tz_minute"] or 0))
            tzinfo = dt.timezone(-delta if match["tz_sign"] == "-" else delta)
    return dt.datetime(
        year, month, day, int(match["hour"]), int(match["minute"]), int(match["second"]), fraction, tzinfo
    )


def _int(text: str) -> int:
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text)


def _float(text: str) -> float:
    lowered = text.lower()
    if lowered.endswith("inf"):
        return float("-inf") if lowered.startswith("-") else float("inf")
    if lowered == ".nan":
        return float("nan")
    return float(text)


_SCALARS = {
    _STR: str,
    "tag:yaml.org,2002:int": _int,
    "tag:yaml.org,2002:float": _float,
    "tag:yaml.org,2002:bool": lambda text: text in ("true", "True", "TRUE"),
    "tag:yaml.org,2002:null": lambda text: None,
    "tag:yaml.org,2002:timestamp": _timestamp,
}
_KIND_NAMES = {
    "tag:yaml.org,2002:int": "integer",
    "tag:yaml.org,2002:float": "number",
    "tag:yaml.org,2002:bool": "boolean",
    "tag:yaml.org,2002:timestamp": "date (YYYY-MM-DD)",
}


def _mark(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def decode(raw: bytes) -> str:
    """UTF-8 text of a file, or a ``yaml-syntax`` problem for binary and non-UTF-8 content."""
    if len(raw) > MAX_FILE_BYTES:
        raise YamlProblem("yaml-syntax", f"the file is larger than {MAX_FILE_BYTES // 1024} KiB; split it up")
    if b"\x00" in raw:
        raise YamlProblem("yaml-syntax", "this is a binary file, not YAML text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        line = raw.count(b"\n", 0, bad.start) + 1
        column = bad.start - (raw.rfind(b"\n", 0, bad.start) + 1) + 1
        raise YamlProblem(
            "yaml-syntax",
            f"the file is not UTF-8 text (byte 0x{raw[bad.start]:02x}); save it as UTF-8",
            line,
            column,
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def compose(text: str) -> Node | None:
    """The node tree of a single-document YAML text (aliases shared, never expanded)."""
    loader = Loader(text)
    try:
        return loader.get_single_node()
    except yaml.MarkedYAMLError as bad:
        mark = bad.problem_mark or bad.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = bad.problem or "not valid YAML"
        if "expected a single document" in (bad.context or ""):
            problem = "the file holds more than one YAML document; keep one resource per file"
        hint = _syntax_hint(text, bad)
        if hint is not None:
            raise hint from None
        raise YamlProblem("yaml-syntax", f"not valid YAML: {problem}", line, column) from None
    except yaml.YAMLError as bad:
        raise YamlProblem("yaml-syntax", f"not valid YAML: {bad}") from None
    finally:
        loader.dispose()


# A line whose value (after an optional key and list dashes) starts with an unquoted "{{" or "{%".
_TEMPLATE_VALUE = re.compile(
    r"(?P<lead>[ ]*(?:-[ \t]+)*(?:(?P<key>[^\s#'\"{}\[\],&*!|>%@`-][^:#]*?|-[^\s:#][^:#]*?)[ \t]*:[ \t]+)?)"
    r"(?P<open>\{\{|\{%)"
)
_TAB_HINT = "a tab is used for indentation here; indent with spaces (YAML does not allow tabs in indentation)"


def _quoted(value: str) -> str:
    if len(value) > 60:
        value = value[:57] + "..."
    return "'" + value.replace("'", "''") + "'" if '"' in value else '"' + value.replace("\\", "\\\\") + '"'


def _quote_hint(lines: list[str], index: int) -> YamlProblem | None:
    """The "put the text in quotes" problem for line ``index`` if its value starts with ``{{``/``{%``."""
    if not 0 <= index < len(lines):
        return None
    row = lines[index]
    match = _TEMPLATE_VALUE.match(row)
    if match is None:
        return None
    value = row[len(match["lead"]) :].split(" #", 1)[0].rstrip()
    key = match["key"].strip() if match["key"] else None
    fixed = f"{key}: {_quoted(value)}" if key else _quoted(value)
    return YamlProblem(
        "yaml-syntax",
        f"not valid YAML: this value starts with {match['open']!r}, which YAML reads as the start of a mapping; "
        f"put the text in quotes: {fixed}",
        index + 1,
        len(match["lead"]) + 1,
    )


def _syntax_hint(text: str, bad: yaml.MarkedYAMLError) -> YamlProblem | None:
    """A located problem that says how to fix a tab in the indentation or an unquoted ``{{``."""
    problem, context = bad.problem_mark, bad.context_mark
    if problem is None:
        return None
    lines = text.split("\n")
    if problem.line >= len(lines):
        return None
    row = lines[problem.line]
    indent = row[: len(row) - len(row.lstrip(" \t-"))]
    if "\t" in indent:
        return YamlProblem("yaml-syntax", f"not valid YAML: {_TAB_HINT}", problem.line + 1, indent.index("\t") + 1)
    if row[problem.column : problem.column + 1] == "\t":
        return YamlProblem("yaml-syntax", f"not valid YAML: {_TAB_HINT}", problem.line + 1, problem.column + 1)
    first = min(problem.line, context.line) if context is not None else problem.line
    for index in range(first, problem.line + 1):
        hint = _quote_hint(lines, index)
        if hint is not None:
            return hint
    return None


def _check_expansion(root: Node) -> None:
    """Refuse alias bombs and recursive aliases by sizing the node DAG, never expanding it.

    Both what the aliases expand to are bounded: values (:data:`MAX_NODES`) and characters of
    text (:data:`MAX_FILE_BYTES`, what a file without aliases can hold at most), so one long text
    repeated by thousands of aliases cannot make the data, its digest or a message huge.
    """
    sizes: dict[int, tuple[int, int]] = {}
    active: set[int] = set()

    def refuse(what: str) -> YamlProblem:
        return YamlProblem(
            "yaml-syntax", f"aliases expand to more than {what} (an alias bomb?); refused without expanding", *_mark(root)
        )

    def size(node: Node, depth: int) -> tuple[int, int]:
        key = id(node)
        known = sizes.get(key)
        if known is not None:
            return known
        if key in active:
            raise YamlProblem("yaml-syntax", "an alias refers to itself (recursive structure)", *_mark(node))
        if depth > MAX_DEPTH:
            raise YamlProblem("yaml-syntax", f"nesting deeper than {MAX_DEPTH} levels", *_mark(node))
        total, chars = 1, 0
        if isinstance(node, ScalarNode):
            chars = len(node.value)
        else:
            children = node.value if isinstance(node, SequenceNode) else [part for pair in node.value for part in pair]
            active.add(key)
            for child in children:
                count, text = size(child, depth + 1)
                total += count
                chars += text
                if total > MAX_NODES or chars > MAX_FILE_BYTES:
                    break
            active.discard(key)
        if total > MAX_NODES:
            raise refuse(f"{MAX_NODES:,} values")
        if chars > MAX_FILE_BYTES:
            raise refuse(f"{MAX_FILE_BYTES // 1024:,} KiB of text")
        sizes[key] = (total, chars)
        return total, chars

    size(root, 0)


class _Builder:
    """Builds plain Python data from nodes; collects duplicate keys instead of stopping."""

    __slots__ = ("duplicates", "text")

    def __init__(self, text: str = "") -> None:
        self.duplicates: list[YamlProblem] = []
        self.text = text

    def build(self, node: Node, depth: int = 0) -> Any:
        if isinstance(node, ScalarNode):
            return self.scalar(node)
        if depth > MAX_DEPTH:
            raise YamlProblem("yaml-syntax", f"nesting deeper than {MAX_DEPTH} levels", *_mark(node))
        if isinstance(node, SequenceNode):
            if node.tag != "tag:yaml.org,2002:seq":
                raise YamlProblem("yaml-syntax", f"unsupported tag {node.tag}", *_mark(node))
            return [self.build(item, depth + 1) for item in node.value]
        if node.tag != "tag:yaml.org,2002:map":
            raise YamlProblem("yaml-syntax", f"unsupported tag {node.tag}", *_mark(node))
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                if _is_double_brace(node, key_node):
                    hint = _quote_hint(self.text.split("\n"), node.start_mark.line)
                    if hint is None or hint.column != node.start_mark.column + 1:
                        hint = YamlProblem(
                            "yaml-syntax",
                            "not valid YAML: this value starts with '{{', which YAML reads as the start of a mapping; "
                            "put the text in quotes",
                            *_mark(node),
                        )
                    raise hint
                raise YamlProblem("yaml-syntax", "a key must be plain text, not a list or mapping", *_mark(key_node))
            key = key_node.value
            if key in mapping:
                self.duplicates.append(
                    YamlProblem("duplicate-key", f"key {key!r} appears more than once in this mapping", *_mark(key_node))
                )
            mapping[key] = self.build(value_node, depth + 1)
        return mapping

    @staticmethod
    def scalar(node: ScalarNode) -> Any:
        construct = _SCALARS.get(node.tag)
        if construct is None:
            raise YamlProblem("yaml-syntax", f"unsupported tag {node.tag}", *_mark(node))
        try:
            return construct(node.value)
        except (ValueError, OverflowError):
            kind = _KIND_NAMES.get(node.tag, node.tag)
            raise YamlProblem("yaml-syntax", f"{node.value!r} is not a valid {kind}", *_mark(node)) from None


def _is_double_brace(mapping: MappingNode, key_node: Node) -> bool:
    """``{{ user.x }}`` unquoted: a flow mapping whose first key is a flow mapping opened right after it."""
    return (
        isinstance(key_node, MappingNode)
        and bool(mapping.flow_style)
        and key_node.start_mark.line == mapping.start_mark.line
        and key_node.start_mark.column == mapping.start_mark.column + 1
    )


@dataclass(slots=True)
class Parsed:
    """A file's data, its node tree (for locating problems) and its duplicate keys."""

    data: Any
    root: Node | None
    duplicates: list[YamlProblem]


def parse(text: str) -> Parsed:
    """Parse one YAML document. Raises :class:`YamlProblem` for anything that is not sound YAML."""
    root = compose(text)
    if root is None:
        return Parsed(None, None, [])
    if "*" in text:
        _check_expansion(root)
    builder = _Builder(text)
    try:
        data = builder.build(root)
    except RecursionError:
        raise YamlProblem("yaml-syntax", "nesting is too deep", *_mark(root)) from None
    return Parsed(data, root, builder.duplicates)


def load(raw: bytes) -> Any:
    """Data of a YAML file's bytes; raises :class:`YamlProblem` on syntax problems or duplicate keys."""
    parsed = parse(decode(raw))
    if parsed.duplicates:
        raise parsed.duplicates[0]
    return parsed.data


_INDEX_FROM = 16  # below this many keys a scan is cheaper than building an index
_key_indexes: weakref.WeakKeyDictionary[MappingNode, dict[str, tuple[Node, Node]]] = weakref.WeakKeyDictionary()


def _entry(node: MappingNode, step: str | int) -> tuple[Node, Node] | None:
    """The (key node, value node) of ``step`` in a mapping; the last one when a key repeats
    (as the loaded data keeps it). Large mappings are indexed once, on first use."""
    pairs = node.value
    if len(pairs) < _INDEX_FROM:
        for key_node, value_node in reversed(pairs):
            if isinstance(key_node, ScalarNode) and key_node.value == step:
                return key_node, value_node
        return None
    index = _key_indexes.get(node)
    if index is None:
        index = {key_node.value: (key_node, value_node) for key_node, value_node in pairs if isinstance(key_node, ScalarNode)}
        _key_indexes[node] = index
    return index.get(step) if isinstance(step, str) else None


def locate(root: Node | None, path: Path, *, key: bool = False) -> tuple[int, int]:
    """Line and column (1-based) of the node at ``path``; the nearest existing ancestor if absent.

    With ``key=True`` and a path ending in a mapping key, the key's position is returned
    (where an unknown field should be pointed at). Each call costs the depth of ``path``, not
    the size of the mappings on the way, so locating one problem per key of a 100,000-key file
    stays linear.
    """
    if root is None:
        return 1, 1
    node = root
    for index, step in enumerate(path):
        last = index == len(path) - 1
        if isinstance(node, MappingNode):
            found = _entry(node, step)
            if found is None:
                break
            node = found[0] if (key and last) else found[1]
        elif isinstance(node, SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
            node = node.value[step]
        else:
            break
    return _mark(node)


def to_json(value: Any) -> Any:
    """The JSON view of loaded data: dates and datetimes become ISO 8601 strings."""
    if isinstance(value, dict):
        return {key: to_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [to_json(item) for item in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value
