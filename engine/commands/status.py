"""``campaigns status``: every task with its status, last pilot test and next occurrence."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from engine import terminal, texttable
from engine.commands.common import echo_json, fixed_clock, format_option, now_option, open_store, repo_option, state_option
from engine.errors import CampaignsError
from engine.status import status_report


@click.command()
@repo_option
@state_option
@format_option(help="text: a table; json: one object per task.")
@now_option(
    "Answer as at this instant (ISO 8601 with a UTC offset, e.g. 2026-12-01T09:30:00+08:00): the next "
    "occurrence and what counts as behind. Default: now."
)
@click.option(
    "--wide",
    is_flag=True,
    help="Show every column, however wide (by default the table fits the terminal, or $COLUMNS, or 80 "
    "columns: CAMPAIGN, SINCE, LAST PILOT TEST and CHANNEL are dropped in that order, then cells wrap).",
)
def status(repo: Path, state_url: str | None, output_format: str, now_text: str | None, wide: bool) -> None:
    """Show every task the state knows: its status and since when, its last pilot test (and
    whether it tested the current content), its next occurrence and its deliveries.

    As a health check it exits 1 when the executor has fallen behind (an occurrence past its last
    window neither delivered nor expired) or when a running task cannot be delivered at all (its
    audiences name an attribute the user directory lost, its provider is misconfigured -- checked
    in this environment, so run it where the executor runs), saying which task and why.

    Times are shown in the zone of each task's site, named under the table (JSON: ISO 8601 with
    the offset, UTC for the stored instants)."""
    clock = fixed_clock(now_text)
    with open_store(repo, state_url, create=False, missing_ok=True, clock=clock) as store:
        report = status_report(store, clock, repo)
    rows, behind, blocked = report.rows, report.behind, report.blocked
    if output_format == "json":
        echo_json(report.to_json())
        _fail_if_unhealthy(behind, blocked)
        return
    if not report.exists:
        click.echo(f"No state at {report.display} yet: nothing has been applied.")
        return
    if not rows:
        click.echo(f"No tasks in the state yet (serial {report.serial}).")
        return
    problems = {item.task: item.problem for item in blocked}
    width = None if wide else terminal.width(sys.stdout)
    fitted = texttable.fit(*_table(rows, problems), width)
    click.echo(fitted.text, nl=False)
    for row in rows:
        if row.emergency is not None:
            held = row.emergency
            for line in (  # each part on its own line(s), so that a short reason is never cut
                f"! task.{row.task} paused (emergency) by {held.paused_by} at {_local(held.paused_at, row.timezone)}:",
                f"  {held.reason}",
                f"  (recorded status {row.recorded_status}; `campaigns resume {row.task} --reason TEXT`)",
            ):
                click.echo(texttable.wrap_line(line, width, indent="    " if line.startswith("  ") else "  "))
    click.echo(texttable.wrap_line(_zones_line(rows), width))
    if fitted.dropped:
        click.echo(texttable.wrap_line(f"Hidden to fit {width} columns: {', '.join(fitted.dropped)} (--wide shows them).", width))
    click.echo(f"State serial {report.serial}, lineage {report.lineage}.")
    _fail_if_unhealthy(behind, blocked)


COLUMNS = (
    texttable.ColumnSpec("TASK", wrap=True),
    texttable.ColumnSpec("CAMPAIGN", drop=1, wrap=True),
    texttable.ColumnSpec("CHANNEL", drop=4),
    texttable.ColumnSpec("SITE", drop=5),
    texttable.ColumnSpec("STATUS", wrap=True),
    texttable.ColumnSpec("SINCE", drop=2),
    texttable.ColumnSpec("LAST PILOT TEST", drop=3, wrap=True),
    texttable.ColumnSpec("NEXT OCCURRENCE"),
    texttable.ColumnSpec("DELIVERIES", wrap=True),
)
"""The status table, with the order its columns give way in to fit the width (TASK, STATUS,
NEXT OCCURRENCE and DELIVERIES always stay)."""


def _table(rows: list, problems: dict[str, str]) -> tuple[list[texttable.ColumnSpec], list[list[str]]]:
    """The columns and cells of the text table (SITE only when the tasks' sites differ in zone)."""
    several_zones = len({row.timezone for row in rows}) > 1
    columns = [spec for spec in COLUMNS if spec.header != "SITE" or several_zones]
    cells = []
    for row in rows:
        if row.last_test_at is None:
            test = "never"
        else:
            test = f"{_local(row.last_test_at, row.timezone)} {'passed' if row.last_test_passed else 'FAILED'}"
            if not row.last_test_current:
                test += " (older content)"
        upcoming = _local(row.next_start, row.timezone) if row.next_start is not None else "-"
        shown_status = row.shown_status + (" (cannot be delivered)" if row.task in problems and row.emergency is None else "")
        line = {
            "TASK": row.task,
            "CAMPAIGN": row.campaign or "",
            "CHANNEL": row.channel or "",
            "SITE": row.site or "",
            "STATUS": shown_status,
            "SINCE": _local(row.since, row.timezone),
            "LAST PILOT TEST": test,
            "NEXT OCCURRENCE": upcoming,
            "DELIVERIES": _delivered(row.extra.get("deliveries")),
        }
        cells.append([line[spec.header] for spec in columns])
    return columns, cells


def _local(moment: dt.datetime | None, zone: str | None) -> str:
    """``2026-12-01 09:30`` in the site's zone (UTC without one); a naive time is UTC (SQLite)."""
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(ZoneInfo(zone) if zone else dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


def _zones_line(rows: list) -> str:
    """Which zone the times are in: one zone for all, else each site's."""
    zones = sorted({(row.site or "?", row.timezone or "UTC") for row in rows})
    names = sorted({zone for _site, zone in zones})
    if len(names) == 1:
        sites = ", ".join(site for site, _zone in zones)
        return f"Times are in {names[0]} (the zone of site {sites})." if sites != "?" else f"Times are in {names[0]}."
    return "Times are in each task's site zone: " + ", ".join(f"{site} {zone}" for site, zone in zones) + "."


def _delivered(counts: dict[str, int] | None) -> str:
    """``1,200 sent, 3 failed`` (only the counts that are not zero), or ``-``."""
    if not counts:
        return "-"
    order = ("sent", "failed", "expired", "unconfirmed", "capped", "suppressed", "pending")
    shown = [f"{counts[name]:,} {name}" for name in order if counts.get(name)]
    return ", ".join(shown) or "-"


def _fail_if_unhealthy(behind: list, blocked: list) -> None:
    """The health check: exit non-zero when an occurrence is still open well past its last
    window, or when a running task cannot be delivered at all; each one on stderr."""
    if not behind and not blocked:
        return
    for item in behind:
        click.echo(f"behind: {item.describe()}", err=True)
    for item in blocked:
        click.echo(f"undeliverable: {item.describe()}", err=True)
    found = []
    if behind:
        plural = "s" if len(behind) != 1 else ""
        found.append(
            f"the executor has fallen behind: {len(behind)} occurrence{plural} past their last window not delivered or "
            "expired (is `campaigns run` running?)"
        )
    if blocked:
        names = ", ".join(item.task for item in blocked[:5]) + (", ..." if len(blocked) > 5 else "")
        plural = "s" if len(blocked) != 1 else ""
        found.append(f"{len(blocked)} running task{plural} cannot be delivered ({names})")
    raise CampaignsError("; ".join(found))
