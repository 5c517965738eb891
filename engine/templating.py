"""Creative texts are Jinja templates, rendered per user in a sandbox.

One environment serves validation, pilot tests and delivery: Jinja2's
``SandboxedEnvironment`` with ``StrictUndefined`` (a missing variable is an error,
never a blank hole). The only name a text sees is ``user``: the user's directory
attributes (or the template's ``example`` values in previews and pilot tests).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

ROOT_NAME = "user"
ALWAYS_AVAILABLE = frozenset({"user_id"})  # every user has an id, whatever the template declares


@lru_cache(maxsize=1)
def environment():
    """The shared sandbox: no autoescape (these are not HTML), StrictUndefined, no loader."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True)


def is_template(text: str) -> bool:
    """Plain text needs no Jinja at all (the common case; keeps validation fast)."""
    return "{" in text and ("{{" in text or "{%" in text or "{#" in text)


@dataclass(frozen=True, slots=True)
class TextAnalysis:
    """What a creative text does, found without rendering it."""

    error: str | None = None  # template-syntax message
    error_line: int = 1  # 1-based line inside the text
    variables: tuple[str, ...] = ()  # attributes of ``user`` it reads
    unknown_names: tuple[str, ...] = ()  # top-level names other than ``user``
    literal_length: int = 0  # characters of plain text around the expressions
    outputs: tuple[str | None, ...] = ()  # per ``{{ }}``: the user attribute it prints, or None


def _unsafe_attribute(name: str) -> bool:
    from jinja2 import sandbox

    unsafe = (
        sandbox.UNSAFE_FUNCTION_ATTRIBUTES
        | sandbox.UNSAFE_METHOD_ATTRIBUTES
        | sandbox.UNSAFE_GENERATOR_ATTRIBUTES
        | sandbox.UNSAFE_COROUTINE_ATTRIBUTES
        | sandbox.UNSAFE_ASYNC_GENERATOR_ATTRIBUTES
        | {"mro", "format", "format_map"}
    )
    return name.startswith("_") or name in unsafe


def _user_attribute(node) -> str | None:
    """``user.x`` or ``user['x']`` -> ``x``."""
    from jinja2 import nodes

    if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.name == ROOT_NAME:
        return node.attr
    if (
        isinstance(node, nodes.Getitem)
        and isinstance(node.node, nodes.Name)
        and node.node.name == ROOT_NAME
        and isinstance(node.arg, nodes.Const)
        and isinstance(node.arg.value, str)
    ):
        return node.arg.value
    return None


def _printed_attribute(node) -> str | None:
    """The user attribute a ``{{ }}`` prints, looking through filters like ``default``."""
    from jinja2 import nodes

    while isinstance(node, nodes.Filter) and node.node is not None:
        node = node.node
    return _user_attribute(node)


# The common creative only prints attributes, optionally with a literal default:
#   "Hi {{ user.first_name }}, {{ user.points | default(0) }} points"
# For such texts the Jinja parse is known in advance, so they skip it (a test checks that
# this fast path and the full sandbox parse agree on every text it accepts).
_SIMPLE_TAG = re.compile(
    r"\{\{\s*user\.([A-Za-z][A-Za-z0-9_]*)\s*"
    r"(?:\|\s*default\(\s*(?:'[^'{}\\]*'|\"[^\"{}\\]*\"|-?[0-9]+(?:\.[0-9]+)?)\s*\)\s*)?\}\}"
)


def _analyze_simple(text: str) -> TextAnalysis | None:
    names = []
    literal = 0
    position = 0
    for match in _SIMPLE_TAG.finditer(text):
        literal += match.start() - position
        position = match.end()
        names.append(match.group(1))
    rest = _SIMPLE_TAG.sub("", text)
    if "{" in rest or "}" in rest:  # any other brace could combine with a tag ("{{{"): let Jinja judge
        return None
    literal += len(text) - position
    return TextAnalysis(variables=tuple(dict.fromkeys(names)), literal_length=literal, outputs=tuple(names))


def _walk(tree):
    """Every node of a Jinja AST (cheaper than repeated ``find_all`` passes)."""
    from jinja2.nodes import Node

    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        children = []
        for name in node.fields:
            value = getattr(node, name, None)
            if isinstance(value, Node):
                children.append(value)
            elif isinstance(value, list):
                children.extend(item for item in value if isinstance(item, Node))
        stack.extend(reversed(children))  # document order


def analyze(text: str) -> TextAnalysis:
    """Parse a creative text with the sandbox's parser and report what it reaches for."""
    if not is_template(text):
        return TextAnalysis(literal_length=len(text))
    simple = _analyze_simple(text)
    if simple is not None:
        return simple
    return analyze_with_jinja(text)


def analyze_with_jinja(text: str) -> TextAnalysis:
    """The full analysis: the sandbox's own parser, then one walk over the syntax tree."""
    from jinja2 import TemplateSyntaxError, nodes

    env = environment()
    try:
        tree = env.parse(text)
    except TemplateSyntaxError as bad:
        return TextAnalysis(error=f"Jinja syntax error: {bad.message}", error_line=bad.lineno or 1)

    variables: dict[str, None] = {}
    loaded: dict[str, None] = {}
    stored: set[str] = set()
    literal = 0
    outputs: list[str | None] = []

    def fail(message: str, node) -> TextAnalysis:
        return TextAnalysis(error=message, error_line=getattr(node, "lineno", 1) or 1)

    for node in _walk(tree):
        if isinstance(node, (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
            return fail("creatives cannot include, import or extend other templates", node)
        if isinstance(node, nodes.Getattr) and _unsafe_attribute(node.attr):
            return fail(f"the sandbox forbids the attribute {node.attr!r}", node)
        if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            if isinstance(node.arg.value, str) and _unsafe_attribute(node.arg.value):
                return fail(f"the sandbox forbids the item {node.arg.value!r}", node)
        if isinstance(node, nodes.Filter) and node.name not in env.filters:
            return fail(f"unknown filter {node.name!r}", node)
        if isinstance(node, nodes.Test) and node.name not in env.tests:
            return fail(f"unknown test {node.name!r}", node)
        if isinstance(node, (nodes.Getattr, nodes.Getitem)):
            name = _user_attribute(node)
            if name is not None:
                variables[name] = None
        elif isinstance(node, nodes.Name):
            if node.ctx == "load":
                loaded[node.name] = None
            else:
                stored.add(node.name)
        elif isinstance(node, nodes.Output):
            for child in node.nodes:
                if isinstance(child, nodes.TemplateData):
                    literal += len(child.data)
                else:
                    outputs.append(_printed_attribute(child))
    unknown = [name for name in loaded if name != ROOT_NAME and name not in stored and name not in env.globals and name != "loop"]
    return TextAnalysis(
        variables=tuple(variables), unknown_names=tuple(sorted(unknown)), literal_length=literal, outputs=tuple(outputs)
    )


def preview_length(literal_length: int, outputs: Sequence[str | None], examples: dict[str, Any]) -> int:
    """Length of a text (its literal characters and what its ``{{ }}`` print, see TextAnalysis)
    with the template's example values in place of its variables."""
    return literal_length + sum(len(str(examples[name])) for name in outputs if name is not None and name in examples)


@lru_cache(maxsize=4096)
def compiled(text: str):
    """A compiled template (compiling costs far more than rendering, so each text compiles once)."""
    return environment().from_string(text)


def render(text: str | None, user: dict[str, Any]) -> str | None:
    """Render one text for one user; raises jinja2's UndefinedError when an attribute is missing."""
    if text is None:
        return None
    if not is_template(text):
        return text
    return compiled(text).render(user=user)
