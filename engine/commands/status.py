"""``campaigns status``: every task with its status, last pilot test and next occurrence."""

from __future__ import annotations

from pathlib import Path

import click

from engine.commands.common import repo_option
from engine.commands.common import echo_json, fixed_clock, format_option, iso, now_option, open_store, state_option, table


@click.command()
@repo_option
@state_option
@format_option(help="text: a table; json: one object per task.")
@now_option(
    "Answer as at this instant (ISO 8601 with a UTC offset, e.g. 2026-12-01T09:30:00+08:00): the next "
    "occurrence and what counts as behind. Default: now."
)
def status(repo: Path, state_url: str | None, output_format: str, now_text: str | None) -> None:
    """Show every task the state knows: its status and since when, its last pilot test (and
    whether it tested the current content), its next occurrence and its deliveries.

    As a health check it exits 1 when the executor has fallen behind (an occurrence past its last
    window neither delivered nor expired) or when a running task cannot be delivered at all (its
    audiences name an attribute the user directory lost, its provider is misconfigured -- checked
    in this environment, so run it where the executor runs), saying which task and why."""
    from engine.delivery.health import undeliverable
    from engine.delivery.report import delivery_totals, executor_behind
    from engine.status import status_rows

    clock = fixed_clock(now_text)
    with open_store(repo, state_url, create=False, missing_ok=True, clock=clock) as store:
        meta = store.meta()
        exists = store.exists
        display = store.display_url
        rows = status_rows(store, clock)
        totals = delivery_totals(store)
        behind = executor_behind(store, clock)
        blocked = undeliverable(store, repo) if exists else []
    held = {row.task for row in rows if row.emergency is not None}
    blocked = [item for item in blocked if item.task not in held]  # an emergency-paused task sends nothing
    problems = {item.task: item.problem for item in blocked}
    for row in rows:  # delivery counts from the ledger (engine.delivery.report)
        counts = totals.get(row.task)
        row.extra["deliveries"] = counts.as_dict() if counts is not None else None
        row.extra["undeliverable"] = problems.get(row.task)
    if output_format == "json":
        echo_json(
            {
                "lineage": meta.lineage,
                "serial": meta.serial,
                "tasks": [row.to_json() for row in rows],
                "executor": {"behind": [b.describe() for b in behind], "ok": not behind},
                "undeliverable": [item.to_json() for item in blocked],
                "ok": not behind and not blocked,
            }
        )
        _fail_if_unhealthy(behind, blocked)
        return
    if not exists:
        click.echo(f"No state at {display} yet: nothing has been applied.")
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
        delivered = _delivered(row.extra.get("deliveries"))
        shown_status = row.shown_status + (" (cannot be delivered)" if row.task in problems and row.emergency is None else "")
        lines.append([row.task, row.campaign or "", row.channel or "", shown_status, iso(row.since) or "", test, upcoming, delivered])
    click.echo(
        table(lines, ["TASK", "CAMPAIGN", "CHANNEL", "STATUS", "SINCE", "LAST PILOT TEST", "NEXT OCCURRENCE", "DELIVERIES"]), nl=False
    )
    for row in rows:
        if row.emergency is not None:
            held = row.emergency
            click.echo(
                f"! task.{row.task} paused (emergency) by {held.paused_by} at {iso(held.paused_at)}: {held.reason} "
                f"(recorded status {row.recorded_status}; `campaigns resume {row.task} --reason TEXT`)"
            )
    click.echo(f"State serial {meta.serial}, lineage {meta.lineage}.")
    _fail_if_unhealthy(behind, blocked)


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
    from engine.errors import CampaignsError

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
