"""A plan for people (text, Markdown for a pull-request comment) and for programs (JSON).

Text follows Terraform: ``+ ~ -`` markers, field changes as ``path: old -> new``, and a final
``Plan: N to create, N to update, N to delete.`` line; colour only when asked (on a TTY).

The plan is what reviewers approve, so no value is ever cut. A short change reads
``path: old -> new``; a long one is a diff of the two values, each on its own line and whole, with
what changed marked: word by word (``difflib``), in reverse video when colour is on, else as
``[-removed-]`` and ``{+added+}``. Created and removed values are shown whole.

Markdown is one PR comment: a hidden marker line first (so CI can find and update its own
comment), a summary table, then a collapsible ``<details>`` per resource. GitHub refuses comments
over 65,536 characters, so the document is built within that budget by leaving out whole field
lines or whole changes, never part of a value, and it says what it left out. In Markdown, the
unchanged start and end of a long value may be shortened to a few words around the change
(``…(N unchanged characters)…``); everything from the first difference to the last is always
shown.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from engine.plan.model import NEEDS_APPROVAL, Change, Plan
from engine.plan.planfile import dumps
from engine.plan.render_impact import CAMPAIGN_LINES, campaign_summaries, forecast_markdown, forecast_text, impact_lines

MARKDOWN_MARKER = "<!-- campaigns-plan -->"
GITHUB_COMMENT_LIMIT = 65_536
INLINE_WIDTH = 120  # ``path: old -> new`` on one line while the two values together are this short
FIELD_BUDGET = 10_000  # characters of field lines per change in Markdown: a creative at its channel's
# limits (content 4,096, redirection 2,048) fits whole; past it, whole fields are left out and named
CONTEXT = 40  # unchanged characters kept on each side of a change when Markdown shortens a value
_DIFF_CELLS = 2_000_000  # beyond tokens x tokens, the middle of a value is one change (linear time)
_COLORS = {"create": "green", "update": "yellow", "delete": "red", "no-op": None}


# -- shared pieces -------------------------------------------------------------------------------


def summary_line(plan: Plan) -> str:
    counts = plan.summary()
    return f"Plan: {counts['create']} to create, {counts['update']} to update, {counts['delete']} to delete."


def show_value(value: Any) -> str:
    """A value as JSON on one line, whole."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


# -- what changed inside a value ---------------------------------------------------------------------

Segment = tuple[str, bool]  # a run of a value's text, and whether it is (part of) what changed
_TOKEN = re.compile(r"\w+|\s+|[^\w\s]", re.UNICODE)
_WORD = re.compile(r"\w")


def _runs(pieces: list[tuple[str, bool]]) -> list[Segment]:
    out: list[Segment] = []
    for text, changed in pieces:
        if not text:
            continue
        if out and out[-1][1] == changed:
            out[-1] = (out[-1][0] + text, changed)
        else:
            out.append((text, changed))
    return out


def _common_ends(old: str, new: str) -> tuple[int, int]:
    """Characters the two texts share at their start, and then at their end (not overlapping)."""
    limit = min(len(old), len(new))
    head = 0
    while head < limit and old[head] == new[head]:
        head += 1
    tail = 0
    while tail < limit - head and old[-1 - tail] == new[-1 - tail]:
        tail += 1
    return head, tail


def _shorten_head(text: str, room: int, context: int) -> str:
    """The last ``context`` characters of an unchanged start (whole words), cutting at most ``room``."""
    cut = min(len(text) - context, room)
    if cut <= context + 20:
        return text
    while cut < min(len(text), room) and _WORD.match(text[cut - 1]) and _WORD.match(text[cut]):
        cut += 1  # do not start in the middle of a word
    return f"…({cut:,} unchanged characters)…" + text[cut:]


def _shorten_tail(text: str, room: int, context: int) -> str:
    keep = max(context, len(text) - room)
    if len(text) - keep <= context + 20:
        return text
    while keep > max(0, len(text) - room) and _WORD.match(text[keep - 1]) and _WORD.match(text[keep]):
        keep -= 1
    return text[:keep] + f"…({len(text) - keep:,} unchanged characters)…"


def diff_segments(old: str, new: str, *, context: int | None = None) -> tuple[list[Segment], list[Segment]]:
    """``old`` and ``new`` cut into runs, the changed runs marked, word by word.

    The runs of each side join back into that side, and the unchanged runs are the same on both
    sides, in order: every character that differs lies in a changed run. With ``context``, the
    unchanged start and end the two share are cut to about that many characters next to the
    first and last change (saying how many were left out); nothing from the first character that
    differs to the last is ever left out.
    """
    a, b = _TOKEN.findall(old), _TOKEN.findall(new)
    head = 0
    while head < len(a) and head < len(b) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < len(a) - head and tail < len(b) - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    a_mid, b_mid = a[head : len(a) - tail], b[head : len(b) - tail]
    if len(a_mid) * len(b_mid) <= _DIFF_CELLS:
        opcodes = difflib.SequenceMatcher(None, a_mid, b_mid, autojunk=False).get_opcodes()
    else:
        opcodes = [("replace", 0, len(a_mid), 0, len(b_mid))]
    start, end = "".join(a[:head]), "".join(a[len(a) - tail :])
    if context is not None and old != new:
        same_start, same_end = _common_ends(old, new)  # what may be left out, in characters
        start = _shorten_head(start, same_start, context)
        end = _shorten_tail(end, same_end, context)
    old_pieces, new_pieces = [(start, False)], [(start, False)]
    for tag, i1, i2, j1, j2 in opcodes:
        old_pieces.append(("".join(a_mid[i1:i2]), tag != "equal"))
        new_pieces.append(("".join(b_mid[j1:j2]), tag != "equal"))
    old_pieces.append((end, False))
    new_pieces.append((end, False))
    return _runs(old_pieces), _runs(new_pieces)


# -- field lines ---------------------------------------------------------------------------------------

MARKS = {"-": ("[-", "-]"), "+": ("{+", "+}")}


@dataclass(frozen=True)
class FieldLine:
    """One line of a change's field differences: its sign (``+ - ~``), whether it is the old or
    new value under a ``~ path:`` line, and its text in runs (the changed ones marked)."""

    sign: str
    segments: tuple[Segment, ...]
    under: bool = False

    def body(self, mark: Callable[[str, str], str] | None = None) -> str:
        """The text, each changed run wrapped by ``mark(text, sign)`` (default: brackets)."""
        if mark is None:
            opening, closing = MARKS.get(self.sign, ("[", "]"))
            mark = lambda text, sign: f"{opening}{text}{closing}"  # noqa: E731
        return "".join(mark(text, self.sign) if changed else text for text, changed in self.segments)

    def text(self, mark: Callable[[str, str], str] | None = None) -> str:
        """As the text plan prints it: old and new values indented under their ``~ path:`` line."""
        return f"{'    ' if self.under else ''}{self.sign} {self.body(mark)}"

    def diff_text(self) -> str:
        """As a ``diff`` code block shows it: the sign in the first column (GitHub colours it)."""
        return f"{self.sign}{'   ' if self.under else ' '}{self.body()}"


def _plain(sign: str, text: str) -> FieldLine:
    return FieldLine(sign, ((text, False),))


def changed_value_lines(path: str, old: Any, new: Any, *, shorten: bool = False) -> list[FieldLine]:
    """``~ path: old -> new`` when short, else ``~ path:`` and the two whole values, changes marked."""
    before, after = show_value(old), show_value(new)
    if len(before) + len(after) <= INLINE_WIDTH:
        return [_plain("~", f"{path}: {before} -> {after}")]
    old_runs, new_runs = diff_segments(before, after, context=CONTEXT if shorten else None)
    return [
        _plain("~", f"{path}:"),
        FieldLine("-", tuple(old_runs), under=True),
        FieldLine("+", tuple(new_runs), under=True),
    ]


def field_entries(change: Change, *, shorten: bool = False) -> list[tuple[str, list[FieldLine]]]:
    """Per field: its path and its lines (``path: old -> new`` or a diff for updates,
    ``path = value`` for creates). Values are whole; ``shorten`` (Markdown) may cut only the
    unchanged ends of a long changed value."""
    if change.action == "update":
        out = []
        for diff in change.diffs:
            if diff.kind == "added":
                out.append((diff.path, [_plain("+", f"{diff.path} = {show_value(diff.new)}")]))
            elif diff.kind == "removed":
                out.append((diff.path, [_plain("-", f"{diff.path} (was {show_value(diff.old)})")]))
            else:
                out.append((diff.path, changed_value_lines(diff.path, diff.old, diff.new, shorten=shorten)))
        return out
    if change.action == "create" and change.body is not None:
        return [(path, [_plain("+", f"{path} = {show_value(value)}")]) for path, value in flatten(change.body)]
    return []


def flatten(body: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Leaves of a body as ``(path, value)``: ``schedule.windows[0].start``."""
    if isinstance(body, dict):
        if not body:
            return [(prefix or "(whole)", {})]
        out: list[tuple[str, Any]] = []
        for key in body:
            out.extend(flatten(body[key], f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(body, list) and body and any(isinstance(item, (dict, list)) for item in body):
        out = []
        for index, item in enumerate(body):
            out.extend(flatten(item, f"{prefix}[{index}]"))
        return out
    return [(prefix or "(whole)", body)]


def _local(iso: str) -> str:
    moment = dt.datetime.fromisoformat(iso)
    return moment.strftime("%Y-%m-%d %H:%M")


def schedule_line(change: Change) -> str | None:
    if change.schedule is None:
        return None
    preview = change.schedule
    if not preview.upcoming:
        when = "no occurrence after now"
    else:
        parts = []
        for occurrence in preview.upcoming:
            if occurrence.key == "once":
                parts.append(f"once, {_local(occurrence.start)} to {_local(occurrence.finish)}")
            else:
                parts.append(_local(occurrence.start))
        when = ", ".join(parts)
    total = f"{preview.total} occurrence{'s' if preview.total != 1 else ''} in all"
    return f"next: {when} ({preview.timezone}; {total})"


def change_lines(change: Change) -> list[str]:
    """The detail lines of one change (without its header), shared by text and Markdown."""
    lines: list[str] = []
    if change.status is not None and change.action != "no-op":
        lines.append(f"status: {change.status.describe()}")
    for note in change.notes:
        lines.append(note)
    for blocker in change.blockers:
        if blocker.code != NEEDS_APPROVAL:
            lines.append(f"blocked: {blocker.code}: {blocker.message}")
    for warning in change.warnings:
        lines.append(f"warning: {warning.code}: {warning.message}")
    line = schedule_line(change)
    if line:
        lines.append(line)
    lines.extend(impact_lines(change))
    return lines


# -- text ------------------------------------------------------------------------------------------


def as_text(plan: Plan, *, color: bool = False) -> str:
    def paint(text: str, fg: str | None, bold: bool = False) -> str:
        return click.style(text, fg=fg, bold=bold) if color and (fg or bold) else text

    changes = plan.actionable
    header = (
        f"State {plan.state} (lineage {plan.lineage[:8]}, serial {plan.serial})."
        if plan.lineage is not None
        else f"State {plan.state} (does not exist yet: apply creates it)."
    )
    drift = [paint(f"! {entry['message']}", "magenta", True) for entry in plan.drift]
    if drift:
        drift = ["", "Drift: the state differs from git outside any pull request:", *drift]
    if not changes:
        return "\n".join([header, *drift, "", "No changes. The state matches the repository."]) + "\n"
    out = [header, *drift, "", "campaigns will perform the following actions:", ""]
    width = min(max(len(c.address) for c in changes), 48)
    for change in changes:
        fg = _COLORS[change.action]
        status = f"  {change.status.describe()}" if change.status is not None else ""
        codes = [b.code for b in change.blockers]
        blocked = paint(f"  [blocked: {', '.join(dict.fromkeys(codes))}]", "red") if codes else ""
        out.append(f"  {paint(change.marker, fg, True)} {paint(change.address.ljust(width), None, True)}{status}{blocked}")
        for line in change_lines(change):
            if line.startswith("status: "):
                continue
            out.append(f"      {paint(line, 'red') if line.startswith('blocked:') else line}")
        for _, lines in field_entries(change):
            for line in lines:
                out.append(f"      {_painted(line) if color else line.text()}")
        out.append("")
    out.append(paint(summary_line(plan), None, True))
    summaries = campaign_summaries(plan)
    if summaries:
        out.extend(f"  {line}" for line in summaries)
    forecast = forecast_text(plan)
    if forecast:
        out.append("")
        out.extend(forecast)
    blockers = plan.blockers()
    if blockers:
        out.append("")
        out.append("Apply is blocked until these are cleared:")
        for code, blocked in blockers.items():
            if code == NEEDS_APPROVAL:
                out.append(f"  {code}: {len(blocked)} change{'s' if len(blocked) != 1 else ''} (merge the pull request, or --approved-by and --reason)")
            else:
                out.append(f"  {code}: {', '.join(c.address for c in blocked)}")
    return "\n".join(out) + "\n"


_SIGN_COLORS = {"+": "green", "-": "red", "~": "yellow"}


def _painted(line: FieldLine) -> str:
    """A field line in its sign's colour, what changed in reverse video (no brackets needed)."""
    fg = _SIGN_COLORS.get(line.sign)
    mark = lambda text, sign: click.style(text, fg=fg, bold=True, reverse=True)  # noqa: E731
    body = "".join(mark(text, line.sign) if changed else click.style(text, fg=fg) for text, changed in line.segments)
    return f"{'    ' if line.under else ''}{click.style(line.sign, fg=fg)} {body}"


# -- Markdown ---------------------------------------------------------------------------------------

_ACTION_ICON = {"create": "➕", "update": "🔄", "delete": "➖"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _fence(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}diff\n{text}\n{fence}"


def _names(names: list[str], room: int = 300) -> str:
    """Names in code spans, joined until ``room`` characters, then how many more."""
    shown: list[str] = []
    used = 0
    for name in names:
        if shown and used + len(name) + 4 > room:
            break
        shown.append(f"`{name}`")
        used += len(name) + 4
    more = len(names) - len(shown)
    return ", ".join(shown) + (f" and {more:,} more" if more else "")


def _details(change: Change, cap: int = FIELD_BUDGET) -> str:
    """One change as a ``<details>`` block; its field lines are cut to about ``cap`` characters by
    leaving out whole fields (the first is always shown), and the block names the ones left out."""
    summary = f"<code>{change.marker} {change.address}</code> {change.action}"
    if change.status is not None:
        summary += f", {change.status.describe().replace('->', '→')}"
    parts = [f"<details><summary>{summary}</summary>", ""]
    for line in change_lines(change):
        if line.startswith("status: "):
            continue
        parts.append(f"- {_escape(line)}")
    entries = field_entries(change, shorten=True)
    if entries:
        kept: list[str] = []
        left_out: list[str] = []
        used = 0
        for path, lines in entries:
            block = [line.diff_text() for line in lines]
            size = sum(len(text) + 1 for text in block)
            if kept and (left_out or used + size > cap):
                left_out.append(path)
                continue
            kept.extend(block)
            used += size
        if parts[-1] != "":
            parts.append("")
        parts.append(_fence("\n".join(kept)))
        if left_out:
            parts.append("")
            parts.append(
                f"_{len(left_out):,} more field change{'s' if len(left_out) != 1 else ''} left out to keep the "
                f"comment short: {_names(left_out)}. `campaigns plan` shows them all._"
            )
    parts.append("")
    parts.append("</details>")
    return "\n".join(parts) + "\n"


def _escape(text: str) -> str:
    return text.replace("<", "&lt;").replace(">", "&gt;")


DRIFT_SHOWN = 20  # drift entries listed in a PR comment; the rest are counted


def drift_markdown(plan: Plan) -> list[str]:
    """The drift block at the top of the PR comment (no lines without drift)."""
    if not plan.drift:
        return []
    lines = ["> [!CAUTION]", "> **Drift**: the state differs from git outside any pull request:"]
    for entry in plan.drift[:DRIFT_SHOWN]:
        lines.append(f"> - {_escape(_cell(entry['message']))}")
    if len(plan.drift) > DRIFT_SHOWN:
        lines.append(f"> - … and {len(plan.drift) - DRIFT_SHOWN:,} more (`campaigns plan` lists them all)")
    return [*lines, ""]


def as_markdown(plan: Plan, *, limit: int = GITHUB_COMMENT_LIMIT) -> str:
    """A PR comment of at most ``limit`` characters (GitHub counts characters, not bytes)."""
    head = [MARKDOWN_MARKER, "### campaigns plan", ""]
    changes = plan.actionable
    lineage = f"lineage `{plan.lineage[:8]}`" if plan.lineage is not None else "a new state"
    state = f"state serial {plan.serial}, {lineage}, repository `{plan.repository_digest[:12]}`"
    head.extend(drift_markdown(plan))
    if not changes:
        head.append(f"**No changes.** The state matches the repository ({state}).")
        return "\n".join(head) + "\n"
    head.append(f"**{summary_line(plan)}** ({state})")
    head.append("")
    summaries = campaign_summaries(plan)
    if summaries:
        head.extend(
            f"- **{_escape(_cell(line.split(':', 1)[0]))}**:{_escape(_cell(line.split(':', 1)[1]))}"
            for line in summaries[:CAMPAIGN_LINES]
        )
        if len(summaries) > CAMPAIGN_LINES:
            head.append(f"- … and {len(summaries) - CAMPAIGN_LINES:,} more campaigns (`campaigns plan` lists them all)")
        head.append("")
    head.extend(forecast_markdown(plan))
    blockers = plan.blockers()
    others = {code: blocked for code, blocked in blockers.items() if code != NEEDS_APPROVAL}
    if others:
        head.append("> [!WARNING]")
        head.append("> Apply will refuse this plan until these are cleared:")
        for code, blocked in others.items():
            names = ", ".join(f"`{c.address}`" for c in blocked[:20])
            more = f" and {len(blocked) - 20} more" if len(blocked) > 20 else ""
            head.append(f"> - **{code}**: {names}{more}")
        head.append("")
    if NEEDS_APPROVAL in blockers:
        head.append("Merging this pull request approves the changes (`needs-approval` clears on merge).")
        head.append("")
    document = "\n".join(head) + "\n"

    reserve = 600  # the closing note
    budget = limit - reserve
    table = ["| | Address | Action | Status | Blockers |", "|---|---|---|---|---|"]
    table_size = sum(len(row) + 1 for row in table)
    rows_shown = 0
    for change in changes:
        status = change.status.describe().replace("->", "→") if change.status is not None else ""
        codes = ", ".join(dict.fromkeys(b.code for b in change.blockers))
        row = f"| {_ACTION_ICON[change.action]} | `{change.address}` | {change.action} | {_cell(status)} | {_cell(codes)} |"
        if len(document) + table_size + len(row) + 1 > budget * 0.45:
            break
        table.append(row)
        table_size += len(row) + 1
        rows_shown += 1
    if rows_shown < len(changes):
        table.append(f"| | … {len(changes) - rows_shown:,} more | | | |")
    document += "\n".join(table) + "\n\n"

    details_shown = 0
    skipped: list[str] = []  # changes whose details did not fit, while later ones still may
    for index, change in enumerate(changes):
        block = _details(change)
        if len(document) + len(block) + 1 > budget:
            skipped.append(change.address)
            if len(skipped) > 20 or len(document) > budget - 200:  # no room left worth trying
                skipped.extend(c.address for c in changes[index + 1 :])
                break
            continue
        document += block + "\n"
        details_shown += 1

    left_out = len(changes) - details_shown
    if left_out or rows_shown < len(changes):
        document += (
            f"_Showing {details_shown:,} of {len(changes):,} changes in detail"
            + (f" and {rows_shown:,} in the table" if rows_shown < len(changes) else "")
            + f": {left_out:,} were left out to stay under GitHub's {limit:,}-character comment limit"
            + (f" ({_names(skipped, room=reserve - 350)})" if skipped else "")
            + ". "
            "Run `campaigns plan` (or `--format json`) for the whole plan._\n"
        )
    return document


# -- JSON -------------------------------------------------------------------------------------------


def as_json(plan: Plan) -> str:
    return dumps(plan)


def render(plan: Plan, output_format: str, *, color: bool = False) -> str:
    if output_format == "json":
        return as_json(plan)
    if output_format == "markdown":
        return as_markdown(plan)
    return as_text(plan, color=color)
