"""Creative texts are a small template language, checked on Jinja's syntax tree and rendered
per user in a sandbox under an output and a time budget.

One environment serves validation, pilot tests and delivery: Jinja2's ``SandboxedEnvironment``
with ``StrictUndefined`` (a missing variable is an error, never a blank hole), no globals, and
only the filters and tests listed below. The only name a text sees is ``user``: the declared
attributes of one user (or the template's ``example`` values in previews and pilot tests),
readable one at a time (``user.first_name``), never as a whole.

The language (``analyze``, what ``campaigns validate`` accepts):

- plain text, and ``{{ expression }}`` outputs;
- ``{% if %}`` / ``{% elif %}`` / ``{% else %}`` / ``{% endif %}``, nothing else: no ``for``,
  ``set``, ``macro``, ``include``...;
- expressions: literals (strings, numbers, booleans, none, lists and tuples of them), declared
  variables ``user.x`` / ``user['x']``, indexing and slicing them with literal integers,
  comparisons, ``and``/``or``/``not``, ``+``, ``-``, ``~`` and inline ``a if c else b``;
  never ``*``, ``**``, ``%``, ``/``, ``//``, calls, or any name but ``user``;
- the filters in ``SAFE_FILTERS`` and the tests in ``SAFE_TESTS``;
- bounded size: at most ``MAX_DEPTH`` nested syntax nodes, ``MAX_NODES`` nodes, ``MAX_BRACKETS``
  nested brackets and ``MAX_PREFIX_OPERATORS`` prefix operators per tag (checked on the token
  stream before Jinja's recursive parser sees the text).

Why rendering stays within budget: every value a text can reach is a declared attribute (at most
``MAX_VALUE_CHARS``), a literal of the text, or the result of one of the listed operations on
those; each operation's output is at most a small constant times its inputs, and the two that can
grow more (``replace``, ``urlencode``) refuse results over ``MAX_VALUE_CHARS``; with no loops the
number of operations is at most the number of nodes. So a render is linear in the text and the
attribute sizes. On top of that, each render has an output budget (checked as the output is
joined, chunk by chunk) and a time budget (checked at every output chunk and every growing filter,
against the rendering thread's CPU time so a loaded machine does not fail anyone): going over is
``TooLong`` / ``RenderTimeout``, a failed message for that user.

Jinja2 is imported by the functions that parse or render (about 25 ms): a validate answered
from its result cache never renders, and pays none of it.
"""

from __future__ import annotations

import contextvars
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

ROOT_NAME = "user"
ALWAYS_AVAILABLE = frozenset({"user_id"})  # every user has an id, whatever the template declares

DEFAULT_OUTPUT_LIMIT = 4096
"""Characters a rendered field may have when its template gives no ``max_length``."""
RENDER_SECONDS = 0.1
"""CPU time one user's render (all fields of a creative) may take."""
MAX_VALUE_CHARS = 4096
"""Longest string a text may handle: an attribute value, or what a growing filter returns."""
MAX_DEPTH = 16
MAX_NODES = 256
MAX_BRACKETS = 8
MAX_PREFIX_OPERATORS = 32

# The filters a creative may use, and why each is safe. Every one returns at most a small
# constant times its input, never calls back into the template, and never prints a whole object.
SAFE_FILTERS: dict[str, str] = {
    "default": "the value, or the given literal when the variable is missing",
    "d": "alias of default",
    "upper": "same text, upper case (at most 3 characters per character)",
    "lower": "same text, lower case",
    "title": "same text, title case",
    "capitalize": "same text, first letter upper case",
    "trim": "removes characters from both ends",
    "truncate": "shortens a text to a length",
    "replace": "replaces a literal; refuses results over MAX_VALUE_CHARS",
    "urlencode": "percent-encodes for a URL; refuses results over MAX_VALUE_CHARS",
    "round": "rounds a number",
    "int": "a number as an integer",
    "float": "a number as a float",
    "abs": "absolute value of a number",
    "string": "the value as text",
    "length": "how many characters a text has",
}
# Deliberately absent: tojson, pprint, format, join, map, attr, items, dictsort, list, select*,
# reject*, groupby, sum, min, max, sort, unique, first, last, random, batch, slice, center,
# indent, wordwrap, filesizeformat, xmlattr, safe, escape, striptags, urlize, wordcount.
SAFE_TESTS = frozenset({"defined", "undefined", "none", "number", "string", "eq", "ne", "lt", "le", "gt", "ge", "in"})
GUARD_FILTERS = frozenset({"default", "d"})
GUARD_TESTS = frozenset({"defined", "undefined"})
BLOCK_TAGS = frozenset({"if", "elif", "else", "endif"})
_COMPARISONS = frozenset({"eq", "ne", "lt", "lteq", "gt", "gteq", "in", "notin"})
_OPEN, _CLOSE = frozenset("([{"), frozenset(")]}")
_PREFIX = frozenset({"not", "if", "else"})


# --- budgets and render failures -------------------------------------------------------------


class RenderLimit(Exception):
    """A render went over a budget. ``reason`` is the ledger's reason code."""

    reason = "render-error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class TooLong(RenderLimit):
    reason = "too-long"


class RenderTimeout(RenderLimit):
    reason = "render-timeout"


class TemplateRefused(Exception):
    """A text outside the creative language reached the renderer (e.g. a state written by an
    older engine); it is never rendered."""

    reason = "template-syntax"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Budget:
    """One user's render budget: ``chars`` for the field being rendered, ``seconds`` for all of
    them. Only the wall clock is read while all is well (cheap). Past the deadline the thread's
    CPU time is sampled over a further quarter of the budget: a render that kept the CPU busy
    through it is over budget (``RenderTimeout``); one that was merely waiting for the CPU on a
    busy machine is given more time, so load alone never fails a user."""

    __slots__ = ("chars", "field", "seconds", "_deadline", "_cpu_mark", "_wall_mark")

    def __init__(self, seconds: float = RENDER_SECONDS) -> None:
        self.seconds = seconds
        self.chars = DEFAULT_OUTPUT_LIMIT
        self.field = "text"
        self._deadline = time.perf_counter() + seconds
        self._cpu_mark: float | None = None
        self._wall_mark = 0.0

    def tick(self) -> None:
        if time.perf_counter() > self._deadline:
            self._late()

    def _late(self) -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        if self._cpu_mark is not None and cpu - self._cpu_mark >= 0.8 * (wall - self._wall_mark):
            raise RenderTimeout(f"rendering took more than {self.seconds * 1000:.0f} ms")
        self._cpu_mark, self._wall_mark = cpu, wall
        self._deadline = wall + self.seconds / 4


_BUDGET: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("creative_render_budget", default=None)


def _tick() -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.tick()


def _bounded(text: str, what: str) -> str:
    if len(text) > MAX_VALUE_CHARS:
        raise TooLong(f"{what} would make a text of {len(text):,} characters (at most {MAX_VALUE_CHARS:,})")
    _tick()
    return text


def _replace(value: Any, old: Any, new: Any, count: int | None = None) -> str:
    """``replace`` that refuses to build a text over MAX_VALUE_CHARS (it checks before building)."""
    text, old, new = str(value), str(old), str(new)
    times = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        times = min(times, count)
    size = len(text) + times * (len(new) - len(old))
    if size > MAX_VALUE_CHARS:
        raise TooLong(f"replace would make a text of {size:,} characters (at most {MAX_VALUE_CHARS:,})")
    _tick()
    return text.replace(old, new, -1 if count is None else count)


def _urlencode(value: Any) -> str:
    from jinja2.utils import url_quote

    text = str(value)
    if len(text) > MAX_VALUE_CHARS:
        raise TooLong(f"urlencode of a {len(text):,}-character text (at most {MAX_VALUE_CHARS:,})")
    return _bounded(url_quote(text), "urlencode")


class UserView:
    """What a text sees as ``user``: the given attributes, by name only (``user.x``, ``user['x']``).

    Not a dict: ``user.items`` or ``user.keys`` is the attribute of that name, never a dict method,
    and there is nothing to iterate or print whole. A string longer than MAX_VALUE_CHARS is
    ``TooLong`` when the text reads it."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = values

    def __getitem__(self, name: str) -> Any:
        value = self._values[name]
        if type(value) is str and len(value) > MAX_VALUE_CHARS:
            raise TooLong(f"user.{name} is {len(value):,} characters (at most {MAX_VALUE_CHARS:,})")
        return value

    def __repr__(self) -> str:
        return "user"


@lru_cache(maxsize=1)
def environment():
    """The shared sandbox: no autoescape (these are not HTML), StrictUndefined, no loader, no
    globals, only SAFE_FILTERS and SAFE_TESTS, and a budgeted ``concat`` (how Jinja joins the
    output chunks of a render)."""
    from jinja2 import StrictUndefined
    from jinja2.exceptions import SecurityError
    from jinja2.sandbox import SandboxedEnvironment

    class CreativeEnvironment(SandboxedEnvironment):
        # Defence in depth: the checker refuses these operators; were one to reach a render anyway,
        # it fails instead of multiplying a string.
        intercepted_binops = frozenset({"*", "**", "%", "/", "//"})

        def call_binop(self, context, operator, left, right):
            raise SecurityError(f"the {operator} operator is not allowed in creatives")

        def concat(self, chunks):
            # Each chunk is bounded (every value and growing filter is), so the text is joined
            # first and measured once: cheaper than counting chunk by chunk.
            text = "".join(chunks)
            budget = _BUDGET.get()
            if budget is not None:
                if len(text) > budget.chars:
                    raise TooLong(f"{len(text):,} characters; the limit is {budget.chars:,}")
                budget.tick()
            return text

    env = CreativeEnvironment(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True)
    builtin = env.filters
    env.filters = {name: builtin[name] for name in SAFE_FILTERS}
    env.filters["replace"] = _replace
    env.filters["urlencode"] = _urlencode
    env.tests = {name: env.tests[name] for name in SAFE_TESTS}
    env.globals = {}
    return env


def is_template(text: str) -> bool:
    """Plain text needs no Jinja at all (the common case; keeps validation fast)."""
    return "{" in text and ("{{" in text or "{%" in text or "{#" in text)


# --- the checker ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextAnalysis:
    """What a creative text does, found without rendering it."""

    error: str | None = None  # template-syntax message
    error_line: int = 1  # 1-based line inside the text
    variables: tuple[str, ...] = ()  # attributes of ``user`` it reads
    unknown_names: tuple[str, ...] = ()  # top-level names other than ``user``
    literal_length: int = 0  # characters of plain text around the expressions
    outputs: tuple[str | None, ...] = ()  # per ``{{ }}``: the user attribute it prints, or None
    required: tuple[str, ...] = ()  # attributes whose absence fails the render (read without default)


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
# this fast path and the full checker agree on every text it accepts).
_SIMPLE_TAG = re.compile(
    r"\{\{\s*user\.([A-Za-z][A-Za-z0-9_]*)\s*"
    r"(\|\s*default\(\s*(?:'[^'{}\\]*'|\"[^\"{}\\]*\"|-?[0-9]+(?:\.[0-9]+)?)\s*\)\s*)?\}\}"
)


def _analyze_simple(text: str) -> TextAnalysis | None:
    names = []
    required = []
    literal = 0
    position = 0
    for match in _SIMPLE_TAG.finditer(text):
        literal += match.start() - position
        position = match.end()
        names.append(match.group(1))
        if match.group(2) is None:
            required.append(match.group(1))
    rest = _SIMPLE_TAG.sub("", text)
    if "{" in rest or "}" in rest:  # any other brace could combine with a tag ("{{{"): let Jinja judge
        return None
    if len(names) * 5 > MAX_NODES:  # each tag is at most 5 nodes: leave the count to the checker
        return None
    literal += len(text) - position
    return TextAnalysis(
        variables=tuple(dict.fromkeys(names)),
        literal_length=literal,
        outputs=tuple(names),
        required=tuple(dict.fromkeys(required)),
    )


def analyze(text: str) -> TextAnalysis:
    """Check a creative text against the creative language and report what it reaches for."""
    if not is_template(text):
        return TextAnalysis(literal_length=len(text))
    simple = _analyze_simple(text)
    if simple is not None:
        return simple
    return analyze_with_jinja(text)


def _token_problem(text: str) -> tuple[str, int] | None:
    """What the token stream shows before anything is parsed: tags other than if/elif/else/endif,
    and nesting deep enough to matter to Jinja's recursive parser (3,000 parentheses would
    otherwise be a RecursionError, not a problem report)."""
    from jinja2 import TemplateSyntaxError

    env = environment()
    depth = ifs = prefix = 0
    tag_start = False
    try:
        for line, kind, value in env.lex(text):
            if kind in ("variable_begin", "block_begin"):
                depth = prefix = 0
                tag_start = kind == "block_begin"
                continue
            if kind == "whitespace":
                continue
            if tag_start:
                tag_start = False
                if kind != "name" or value not in BLOCK_TAGS:
                    return _tag_message(value if kind == "name" else None), line
                if value == "if":
                    ifs += 1
                    if ifs > MAX_DEPTH // 2:
                        return f"{{% if %}} blocks are nested more than {MAX_DEPTH // 2} deep", line
                elif value == "endif":
                    ifs -= 1
                continue
            if kind == "operator":
                if value in _OPEN:
                    depth += 1
                    if depth > MAX_BRACKETS:
                        return f"brackets are nested more than {MAX_BRACKETS} deep", line
                elif value in _CLOSE:
                    depth -= 1
                elif value in ("-", "+"):
                    prefix += 1
            elif kind == "name" and value in _PREFIX:
                prefix += 1
            if prefix > MAX_PREFIX_OPERATORS:
                return f"one tag has more than {MAX_PREFIX_OPERATORS} operators; split the logic up", line
    except TemplateSyntaxError as bad:
        return f"Jinja syntax error: {bad.message}", bad.lineno or 1
    return None


def _tag_message(name: str | None) -> str:
    if name == "for":
        return "loops ({% for %}) are not allowed in creatives; only {% if %}, {% elif %}, {% else %} and {% endif %}"
    if name in ("set", "with", "macro", "call", "filter", "block", "autoescape"):
        return f"{{% {name} %}} is not allowed in creatives; only {{% if %}}, {{% elif %}}, {{% else %}} and {{% endif %}}"
    if name in ("include", "import", "from", "extends"):
        return "creatives cannot include, import or extend other templates"
    shown = f"{{% {name} %}}" if name else "this tag"
    return f"{shown} is not allowed in creatives; only {{% if %}}, {{% elif %}}, {{% else %}} and {{% endif %}}"


_FORBIDDEN_NODES = {
    "Mul": "multiplication (*) is not allowed in creatives",
    "Pow": "powers (**) are not allowed in creatives",
    "Mod": "the % operator is not allowed in creatives",
    "Div": "division (/) is not allowed in creatives",
    "FloorDiv": "division (//) is not allowed in creatives",
    "Dict": "dict literals are not allowed in creatives",
    "For": "loops ({% for %}) are not allowed in creatives",
    "Assign": "{% set %} is not allowed in creatives",
    "AssignBlock": "{% set %} is not allowed in creatives",
    "Macro": "macros are not allowed in creatives",
    "CallBlock": "{% call %} is not allowed in creatives",
    "FilterBlock": "{% filter %} blocks are not allowed in creatives",
    "With": "{% with %} is not allowed in creatives",
    "Block": "{% block %} is not allowed in creatives",
    "Extends": "creatives cannot include, import or extend other templates",
    "Include": "creatives cannot include, import or extend other templates",
    "Import": "creatives cannot include, import or extend other templates",
    "FromImport": "creatives cannot include, import or extend other templates",
}
_ALLOWED_NODES = frozenset(
    {
        "Template", "Output", "TemplateData", "If", "Const", "Getattr", "Getitem", "Slice", "Name",
        "Filter", "Test", "Keyword", "CondExpr", "Compare", "Operand", "And", "Or", "Not", "Neg",
        "Pos", "Concat", "Add", "Sub", "List", "Tuple",
    }
)  # fmt: skip
_SCALARS = (str, int, float, bool, type(None))


@lru_cache(maxsize=None)
def _arguments_fit(what: str, name: str, positional: int, keywords: tuple[str, ...]) -> bool:
    """Whether a filter or test accepts the value plus these arguments (so a wrong call is a
    problem report, not a failed render for every user)."""
    import inspect

    env = environment()
    function = (env.filters if what == "filter" else env.tests)[name]
    passed = 1 if getattr(function, "jinja_pass_arg", None) is not None else 0
    try:
        inspect.signature(function).bind(*([None] * (passed + 1 + positional)), **dict.fromkeys(keywords))
    except TypeError:
        return False
    return True


@lru_cache(maxsize=4096)
def analyze_with_jinja(text: str) -> TextAnalysis:
    """The full check: the token pre-check, the sandbox's own parser, then one walk over the
    syntax tree that allows only the creative language (see the module docstring)."""
    from jinja2 import TemplateSyntaxError, nodes
    from jinja2.defaults import DEFAULT_NAMESPACE

    found = _token_problem(text)
    if found is not None:
        return TextAnalysis(error=found[0], error_line=found[1])
    env = environment()
    try:
        tree = env.parse(text)
    except TemplateSyntaxError as bad:
        return TextAnalysis(error=f"Jinja syntax error: {bad.message}", error_line=bad.lineno or 1)
    except RecursionError:  # the token pre-check should make this unreachable; never a traceback
        return TextAnalysis(error="the text is nested too deeply")

    variables: dict[str, None] = {}
    required: dict[str, None] = {}
    guarded: set[str] = set()
    unknown: dict[str, None] = {}
    literal = 0
    outputs: list[str | None] = []
    count = 0

    def fail(message: str, node) -> TextAnalysis:
        return TextAnalysis(error=message, error_line=getattr(node, "lineno", 1) or 1)

    # (node, depth, guarded): guarded = the operand of default(...) or of an `is defined` test
    stack: list[tuple[Any, int, bool]] = [(tree, 1, False)]
    while stack:
        node, depth, is_guarded = stack.pop()
        count += 1
        if count > MAX_NODES:
            return fail(f"the text has more than {MAX_NODES} expression parts; split it up or simplify it", node)
        if depth > MAX_DEPTH:
            return fail(f"expressions are nested more than {MAX_DEPTH} deep", node)
        kind = type(node).__name__
        if kind not in _ALLOWED_NODES:
            if isinstance(node, nodes.Call):
                callee = node.node.name if isinstance(node.node, nodes.Name) else None
                if callee is not None and callee in DEFAULT_NAMESPACE:
                    return fail(f"{callee}() is not allowed in creatives", node)
                return fail("calling functions or methods is not allowed in creatives", node)
            return fail(_FORBIDDEN_NODES.get(kind, f"{kind} is not allowed in creatives"), node)
        children: list[Any] = []
        child_guarded = False
        if isinstance(node, (nodes.Getattr, nodes.Getitem)):
            name = _user_attribute(node)
            if name is not None:
                if _unsafe_attribute(name):
                    return fail(f"the sandbox forbids the attribute {name!r}", node)
                variables[name] = None
                if not is_guarded:
                    required[name] = None
                continue  # the Name child is the user itself: nothing more to check
            if isinstance(node, nodes.Getattr):
                if _unsafe_attribute(node.attr):
                    return fail(f"the sandbox forbids the attribute {node.attr!r}", node)
                if isinstance(node.node, nodes.Name) and node.node.name != ROOT_NAME:
                    stack.append((node.node, depth + 1, False))  # `customer.name`: an unknown name
                    continue
                return fail("only declared variables can be read (user.<variable>); nothing inside them", node)
            if isinstance(node.node, nodes.Name) and node.node.name == ROOT_NAME:
                return fail("a variable is read by its name: user.<variable> or user['variable']", node)
            if isinstance(node.node, nodes.Name):
                stack.append((node.node, depth + 1, False))  # `customer['name']`: an unknown name
                continue
            arg = node.arg
            literal_int = isinstance(arg, nodes.Const) and type(arg.value) is int
            if not literal_int and not isinstance(arg, nodes.Slice):
                return fail("only literal integers and slices can index a value ([0], [:10])", node)
            children = [node.node, arg]
        elif isinstance(node, nodes.Name):
            if node.name == ROOT_NAME:
                return fail(
                    "{{ user }} would print every attribute of the user; print one declared variable (user.<variable>)",
                    node,
                )
            if node.name in DEFAULT_NAMESPACE:
                return fail(f"{node.name} is not allowed in creatives", node)
            unknown[node.name] = None
            continue
        elif isinstance(node, nodes.Const):
            if not isinstance(node.value, _SCALARS):
                return fail("only text, numbers, booleans and none are literals", node)
            continue
        elif isinstance(node, nodes.Slice):
            for part in (node.start, node.stop, node.step):
                if part is not None and not (isinstance(part, nodes.Const) and type(part.value) is int):
                    return fail("slices take literal integers ([:10])", node)
            continue
        elif isinstance(node, (nodes.Filter, nodes.Test)):
            allowed = SAFE_FILTERS if isinstance(node, nodes.Filter) else SAFE_TESTS
            what = "filter" if isinstance(node, nodes.Filter) else "test"
            if node.name not in allowed:
                listed = ", ".join(sorted(allowed))
                return fail(f"the {node.name!r} {what} is not allowed in creatives (allowed: {listed})", node)
            if node.dyn_args is not None or node.dyn_kwargs is not None:
                return fail(f"*args and **kwargs are not allowed in a {what}", node)
            if node.node is None:
                return fail("{% filter %} blocks are not allowed in creatives", node)
            if not _arguments_fit(what, node.name, len(node.args), tuple(k.key for k in node.kwargs)):
                return fail(f"the {node.name!r} {what} does not take these arguments", node)
            child_guarded = node.name in (GUARD_FILTERS if isinstance(node, nodes.Filter) else GUARD_TESTS)
            if child_guarded and isinstance(node, nodes.Test):
                name = _user_attribute(node.node)
                if name is not None:
                    guarded.add(name)
            stack.extend((child, depth + 1, False) for child in reversed([*node.args, *node.kwargs]))
            stack.append((node.node, depth + 1, child_guarded))
            continue
        elif isinstance(node, nodes.CondExpr):
            if node.expr2 is None:
                return fail("an inline if needs an else ('a' if user.x else 'b')", node)
        elif isinstance(node, nodes.Operand):
            if node.op not in _COMPARISONS:
                return fail(f"the {node.op} comparison is not allowed", node)
        elif isinstance(node, nodes.Output):
            for child in node.nodes:
                if isinstance(child, nodes.TemplateData):
                    literal += len(child.data)
                else:
                    outputs.append(_printed_attribute(child))
        if not children:
            for field in node.fields:
                value = getattr(node, field, None)
                if isinstance(value, nodes.Node):
                    children.append(value)
                elif isinstance(value, list):
                    children.extend(item for item in value if isinstance(item, nodes.Node))
        stack.extend((child, depth + 1, False) for child in reversed(children))  # document order
    return TextAnalysis(
        variables=tuple(variables),
        unknown_names=tuple(sorted(unknown)),
        literal_length=literal,
        outputs=tuple(outputs),
        required=tuple(name for name in required if name not in guarded),
    )


def required_attributes(texts: Sequence[Any]) -> list[str]:
    """Attributes whose absence fails the render of some of ``texts`` (read without ``default``
    or an ``is defined`` guard), but ``user_id``, which every user has."""
    found: dict[str, None] = {}
    for text in texts:
        if isinstance(text, str) and is_template(text):
            analysis = analyze(text)
            if not analysis.error:
                found.update(dict.fromkeys(name for name in analysis.required if name not in ALWAYS_AVAILABLE))
    return list(found)


def creative_texts(body: Mapping[str, Any]) -> list[Any]:
    """A creative's text fields: title, content and each redirection."""
    redirection = body.get("redirection")
    return [body.get("title"), body.get("content"), *(redirection if isinstance(redirection, list) else [redirection])]


def static_prefix(text: str) -> str:
    """The plain text before a template's first tag (all of it for plain text)."""
    from jinja2 import TemplateSyntaxError

    if not is_template(text):
        return text
    parts = []
    try:
        for _line, kind, value in environment().lex(text):
            if kind != "data":
                break
            parts.append(value)
    except TemplateSyntaxError:
        pass  # what came before the bad tag is still the static part
    return "".join(parts)


def preview_length(literal_length: int, outputs: Sequence[str | None], examples: dict[str, Any]) -> int:
    """Length of a text (its literal characters and what its ``{{ }}`` print, see TextAnalysis)
    with the template's example values in place of its variables."""
    return literal_length + sum(len(str(examples[name])) for name in outputs if name is not None and name in examples)


# --- rendering -----------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def compiled(text: str):
    """A compiled template (compiling costs far more than rendering, so each text compiles once).
    A text outside the creative language is ``TemplateRefused``, never compiled."""
    analysis = analyze(text)
    if analysis.error:
        raise TemplateRefused(analysis.error)
    if analysis.unknown_names:
        raise TemplateRefused(f"uses {', '.join(analysis.unknown_names)}; only user.<variable> is available")
    return environment().from_string(text)


def activate(budget: Budget) -> contextvars.Token:
    """Make ``budget`` the one renders in this thread (or task) are held to, until ``release``."""
    return _BUDGET.set(budget)


def release(token: contextvars.Token) -> None:
    _BUDGET.reset(token)


def render_with(template: Any, view: UserView, budget: Budget, *, field: str = "text", limit: int | None = None) -> str:
    """Render a compiled text for one user under ``budget``, the field's output limited to
    ``limit`` characters (else DEFAULT_OUTPUT_LIMIT). Raises UndefinedError for a missing variable,
    TooLong, RenderTimeout, or the sandbox's errors. (Within ``activate(budget)``, set
    ``budget.field``/``budget.chars`` and call ``template.render(user=view)`` directly.)"""
    budget.field = field
    budget.chars = limit if limit is not None else DEFAULT_OUTPUT_LIMIT
    token = _BUDGET.set(budget)
    try:
        return template.render(user=view)
    finally:
        _BUDGET.reset(token)


def render(text: str | None, user: Mapping[str, Any], *, limit: int | None = None, seconds: float = RENDER_SECONDS) -> str | None:
    """Render one text for one user; raises jinja2's UndefinedError when an attribute is missing,
    TooLong / RenderTimeout over the output / time budget, TemplateRefused outside the language."""
    if text is None:
        return None
    if not is_template(text):
        if len(text) > (limit if limit is not None else DEFAULT_OUTPUT_LIMIT):
            raise TooLong(f"the text is {len(text):,} characters (at most {limit or DEFAULT_OUTPUT_LIMIT:,})")
        return text
    return render_with(compiled(text), UserView(user), Budget(seconds), limit=limit)
