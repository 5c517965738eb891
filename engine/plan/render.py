"""A plan for people (text, Markdown for a pull-request comment) and for programs (JSON).

Text follows Terraform: ``+ ~ -`` markers, field changes as ``path: old -> new``, and a final
``Plan: N to create, N to update, N to delete.`` line; colour only when asked (on a TTY).

Markdown is one PR comment: a hidden marker line first (so CI can find and update its own
comment), a summary table, then a collapsible ``<details>`` per resource. GitHub refuses comments
over 65,536 characters, so the document is built within that budget and says how much it left out.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from engine.plan.model import NEEDS_APPROVAL, Change, Plan, dumps

MARKDOWN_MARKER = "<!-- campaigns-plan -->"
GITHUB_COMMENT_LIMIT = 65_536
VALUE_WIDTH = 120
_COLORS = {"create": "green", "update": "yellow", "delete": "red", "no-op": None}


# -- shared pieces -------------------------------------------------------------------------------


def summary_line(plan: Plan) -> str:
    counts = plan.summary()
    return f"Plan: {counts['create']} to create, {counts['update']} to update, {counts['delete']} to delete."


def show_value(value: Any, width: int = VALUE_WIDTH) -> str:
    """A value as JSON on one line, shortened to ``width`` characters."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= width else text[: width - 1] + "…"


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
    line = schedule_line(change)
    if line:
        lines.append(line)
    if change.audience_size is not None:
        lines.append(f"audience: {change.audience_size:,} user{'s' if change.audience_size != 1 else ''}")
    return lines


def field_lines(change: Change) -> list[str]:
    """``path: old -> new`` for updates, ``path = value`` for creates."""
    if change.action == "update":
        out = []
        for diff in change.diffs:
            if diff.kind == "added":
                out.append(f"+ {diff.path} = {show_value(diff.new)}")
            elif diff.kind == "removed":
                out.append(f"- {diff.path} (was {show_value(diff.old)})")
            else:
                out.append(f"~ {diff.path}: {show_value(diff.old)} -> {show_value(diff.new)}")
        return out
    if change.action == "create" and change.body is not None:
        return [f"+ {path} = {show_value(value)}" for path, value in flatten(change.body)]
    return []


# -- text ------------------------------------------------------------------------------------------


def as_text(plan: Plan, *, color: bool = False) -> str:
    import click

    def paint(text: str, fg: str | None, bold: bool = False) -> str:
        return click.style(text, fg=fg, bold=bold) if color and (fg or bold) else text

    changes = plan.actionable
    header = (
        f"State {plan.state} (lineage {plan.lineage[:8]}, serial {plan.serial})."
        if plan.lineage is not None
        else f"State {plan.state} (does not exist yet: apply creates it)."
    )
    if not changes:
        return f"{header}\n\nNo changes. The state matches the repository.\n"
    out = [header, "", "campaigns will perform the following actions:", ""]
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
        for line in field_lines(change):
            out.append(f"      {paint(line, _COLORS[{'+': 'create', '-': 'delete', '~': 'update'}[line[0]]])}")
        out.append("")
    out.append(paint(summary_line(plan), None, True))
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


# -- Markdown ---------------------------------------------------------------------------------------

_ACTION_ICON = {"create": "➕", "update": "🔄", "delete": "➖"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _fence(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}diff\n{text}\n{fence}"


def _details(change: Change, cap: int) -> str:
    summary = f"<code>{change.marker} {change.address}</code> {change.action}"
    if change.status is not None:
        summary += f", {change.status.describe().replace('->', '→')}"
    parts = [f"<details><summary>{summary}</summary>", ""]
    for line in change_lines(change):
        if line.startswith("status: "):
            continue
        parts.append(f"- {_escape(line)}")
    fields = field_lines(change)
    if fields:
        text = "\n".join(fields)
        if len(text) > cap:
            text = text[:cap].rsplit("\n", 1)[0] + f"\n… ({len(fields)} lines in all; the rest is in the text plan)"
        if parts[-1] != "":
            parts.append("")
        parts.append(_fence(text))
    parts.append("")
    parts.append("</details>")
    return "\n".join(parts) + "\n"


def _escape(text: str) -> str:
    return text.replace("<", "&lt;").replace(">", "&gt;")


def as_markdown(plan: Plan, *, limit: int = GITHUB_COMMENT_LIMIT) -> str:
    """A PR comment of at most ``limit`` characters (GitHub counts characters, not bytes)."""
    head = [MARKDOWN_MARKER, "### campaigns plan", ""]
    changes = plan.actionable
    lineage = f"lineage `{plan.lineage[:8]}`" if plan.lineage is not None else "a new state"
    state = f"state serial {plan.serial}, {lineage}, repository `{plan.repository_digest[:12]}`"
    if not changes:
        head.append(f"**No changes.** The state matches the repository ({state}).")
        return "\n".join(head) + "\n"
    head.append(f"**{summary_line(plan)}** ({state})")
    head.append("")
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
    for change in changes:
        block = _details(change, cap=4000)
        if len(document) + len(block) + 1 > budget:
            break
        document += block + "\n"
        details_shown += 1

    left_out = len(changes) - details_shown
    if left_out or rows_shown < len(changes):
        document += (
            f"_Showing {details_shown:,} of {len(changes):,} changes in detail"
            + (f" and {rows_shown:,} in the table" if rows_shown < len(changes) else "")
            + f": {left_out:,} were left out to stay under GitHub's {limit:,}-character comment limit. "
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
