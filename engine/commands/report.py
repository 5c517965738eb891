"""``campaigns report TASK``: delivery counts per occurrence, from the ledger."""

from __future__ import annotations

from pathlib import Path

import click

from engine.commands.common import echo_json, fixed_clock, now_option, open_store, repo_option, state_option, table


@click.command()
@click.argument("task_id", metavar="TASK")
@repo_option
@state_option
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for people, json for programs.",
)
@click.option(
    "--no-estimate",
    is_flag=True,
    help="Do not count the members an occurrence still being fanned out has not reached yet "
    "(saves one count query over the audiences).",
)
@now_option(
    "Report as at this instant (ISO 8601 with a UTC offset, e.g. 2026-12-01T09:30:00+08:00): which "
    "occurrences are due. Default: now."
)
def report(
    repo: Path, state_url: str | None, task_id: str, output_format: str, no_estimate: bool, now_text: str | None
) -> None:
    """Show, for each occurrence of TASK, how many users were sent, failed, expired, capped,
    suppressed and are still pending."""
    from engine.delivery.report import REPORTED, table_rows, task_report

    clock = fixed_clock(now_text)
    with open_store(repo, state_url, create=False, missing_ok=True, clock=clock) as store:
        result = task_report(store, task_id, clock=clock, estimate=not no_estimate)
    if output_format == "json":
        echo_json(result.to_json())
        return
    status = result.status or "unknown"
    click.echo(f"Task {result.task} ({status}{', ' + result.channel if result.channel else ''})")
    if not result.occurrences:
        click.echo("No occurrence has been delivered yet.")
        return
    header = ["OCCURRENCE", "STATE", *[name.upper() for name in REPORTED]]
    click.echo(table(table_rows(result), header), nl=False)
