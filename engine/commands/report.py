"""``campaigns report TASK``: delivery counts per occurrence, from the ledger; ``--failed`` lists
the failed users with their reason, streamed (a million failures need no million rows in memory)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from engine.commands.common import echo_json, fixed_clock, format_option, now_option, open_store, repo_option, state_option, table

_WRITE_EVERY = 1000
"""Failed users written per ``echo`` while streaming the ``--failed`` list."""


@click.command()
@click.argument("task_id", metavar="TASK")
@repo_option
@state_option
@format_option(("table", "json"), "table", "table for people, json for programs.")
@click.option(
    "--no-estimate",
    is_flag=True,
    help="Do not count the members an occurrence still being fanned out has not reached yet "
    "(saves one count query over the audiences).",
)
@click.option(
    "--failed",
    "list_failed",
    is_flag=True,
    help="Also list every failed user with the reason and its detail (JSON: `failures`), streamed.",
)
@click.option("--occurrence", metavar="KEY", help="With --failed: only the failed users of this occurrence (e.g. 2026-12-01, once).")
@now_option(
    "Report as at this instant (ISO 8601 with a UTC offset, e.g. 2026-12-01T09:30:00+08:00): which "
    "occurrences are due. Default: now."
)
def report(
    repo: Path,
    state_url: str | None,
    task_id: str,
    output_format: str,
    no_estimate: bool,
    list_failed: bool,
    occurrence: str | None,
    now_text: str | None,
) -> None:
    """Show, for each occurrence of TASK, how many users were sent, failed (by reason), expired,
    capped, suppressed, are still pending, and are unconfirmed (handed to the provider before a
    crash, with no confirmation, when the window closed)."""
    from engine.delivery.report import failures, table_header, table_rows, task_report
    from engine.errors import UsageError

    if occurrence is not None and not list_failed:
        raise UsageError("--occurrence only works with --failed")
    clock = fixed_clock(now_text)
    with open_store(repo, state_url, create=False, missing_ok=True, clock=clock) as store:
        result = task_report(store, task_id, clock=clock, estimate=not no_estimate)
        listed = failures(store, result, occurrence) if list_failed else None
        if output_format == "json":
            if listed is None:
                echo_json(result.to_json())
            else:
                _stream_json(result.to_json(), listed)
            return
        status = result.status or "unknown"
        click.echo(f"Task {result.task} ({status}{', ' + result.channel if result.channel else ''})")
        if not result.occurrences:
            click.echo("No occurrence has been delivered yet.")
            return
        click.echo(table(table_rows(result), table_header(result)), nl=False)
        if listed is not None:
            _stream_table(listed, occurrence)


def _stream_json(head: dict, listed) -> None:
    """The report's JSON object with ``failures`` written entry by entry as the rows come."""
    text = json.dumps(head, indent=2, ensure_ascii=False, default=str)
    assert text.endswith("\n}")
    click.echo(text[:-2] + ',\n  "failures": [', nl=False)
    chunk: list[str] = []
    written = 0
    for failure in listed:
        chunk.append(("\n    " if written == 0 and not chunk else ",\n    ") + json.dumps(failure.to_json(), ensure_ascii=False))
        if len(chunk) >= _WRITE_EVERY:
            written += len(chunk)
            click.echo("".join(chunk), nl=False)
            chunk.clear()
    written += len(chunk)
    click.echo("".join(chunk) + ("\n  ]\n}" if written else "]\n}"))


def _stream_table(listed, occurrence: str | None) -> None:
    """One line per failed user (fixed columns: the rows are not known in advance)."""
    lines: list[str] = []
    count = 0
    for failure in listed:
        if count == 0:
            click.echo("\nFailed users" + (f" of occurrence {occurrence}" if occurrence else "") + ":")
            click.echo(f"{'OCCURRENCE':<10}  {'USER':<16}  {'REASON':<20}  DETAIL")
        count += 1
        lines.append(f"{failure.occurrence:<10}  {failure.user_id:<16}  {failure.reason or '-':<20}  {failure.detail or ''}".rstrip())
        if len(lines) >= _WRITE_EVERY:
            click.echo("\n".join(lines))
            lines.clear()
    if lines:
        click.echo("\n".join(lines))
    if count == 0:
        click.echo("\nNo failed users" + (f" in occurrence {occurrence}." if occurrence else "."))
    else:
        click.echo(f"{count:,} failed user{'s' if count != 1 else ''}.")
