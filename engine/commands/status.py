"""``campaigns status``: every task with its status, last pilot test and next occurrence."""

from __future__ import annotations

from pathlib import Path

import click

from engine.commands.common import repo_option
from engine.commands.state import echo_json, format_option, iso, open_store, state_option, table


@click.command()
@repo_option
@state_option
@format_option(help="text: a table; json: one object per task.")
def status(repo: Path, state_url: str | None, output_format: str) -> None:
    """Show every task the state knows: its status and since when, its last pilot test (and
    whether it tested the current content) and its next occurrence."""
    from engine.status import status_rows

    with open_store(repo, state_url, create=False) as store:
        meta = store.meta()
        rows = status_rows(store)
    if output_format == "json":
        echo_json({"lineage": meta.lineage, "serial": meta.serial, "tasks": [row.to_json() for row in rows]})
        return
    if not rows:
        click.echo(f"No tasks in the state yet (serial {meta.serial}).")
        return
    lines = []
    for row in rows:
        if row.last_test_at is None:
            test = "never"
        else:
            test = f"{iso(row.last_test_at)} {'passed' if row.last_test_passed else 'FAILED'}"
            if not row.last_test_current:
                test += " (older content)"
        upcoming = "-"
        if row.next_start is not None:
            upcoming = row.next_start.isoformat(sep=" ", timespec="minutes")
        lines.append([row.task, row.campaign or "", row.channel or "", row.status, iso(row.since) or "", test, upcoming])
    click.echo(table(lines, ["TASK", "CAMPAIGN", "CHANNEL", "STATUS", "SINCE", "LAST PILOT TEST", "NEXT OCCURRENCE"]), nl=False)
    click.echo(f"State serial {meta.serial}, lineage {meta.lineage}.")
