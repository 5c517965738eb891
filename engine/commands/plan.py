"""``campaigns plan``: what ``apply`` would change, for people, for a PR comment, or saved."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from engine.commands.common import format_option, now_option, parse_now, problems_reported, repo_option, state_option
from engine.plan import planfile, render
from engine.plan.impact import DEFAULT_FORECAST_DAYS
from engine.plan.model import NEEDS_APPROVAL
from engine.plan.run import plan_repository
from engine.terminal import use_color
from engine.validation.filecheck import gc_paused


@click.command()
@repo_option
@state_option
@format_option(
    ("text", "markdown", "json"),
    help="text: + ~ - per change and a Plan: line; markdown: a pull-request comment "
    "(under GitHub's 65,536-character limit); json: versioned, with everything apply needs.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    metavar="FILE",
    help="Also save the plan (JSON with a checksum) for `campaigns apply FILE`.",
)
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when there are no changes, 2 when there are changes, 1 on error.",
)
@click.option(
    "--fail-on-blockers",
    is_flag=True,
    help="Exit 3 when the apply after a merge would be refused: any blocker but needs-approval "
    "(a missing pilot test, an unapproved template). For the pull request's required status check.",
)
@click.option(
    "--color/--no-color",
    default=None,
    help="Colour the text plan (default: only when printing to a terminal, and never with $NO_COLOR set).",
)
@click.option(
    "--forecast-days",
    type=click.IntRange(0, 366),
    default=DEFAULT_FORECAST_DAYS,
    show_default=True,
    metavar="N",
    help="Site-local days of the cap forecast (messages due, users, users the daily cap holds back); 0: none.",
)
@now_option("The instant to plan at (ISO 8601 with a UTC offset): the first forecast day and the schedule previews.")
def plan(
    repo: Path,
    state_url: str | None,
    output_format: str,
    out: Path | None,
    detailed_exitcode: bool,
    fail_on_blockers: bool,
    color: bool | None,
    forecast_days: int,
    now_text: str | None,
) -> None:
    """Compare the repository with the state and show every change apply would make.

    Each change has an address (task.flash-sale, creative.flash-a, ...), an action (create,
    update, delete), field-level differences, for tasks the status transition and the next
    occurrences, and its blockers: needs-pilot-test, template-not-approved, needs-approval
    (cleared by the merge). A repository that does not validate cannot be planned.

    What a change will do, counted from the user directory: audience sizes before and after,
    SMS segments and cost, and a forecast of the next --forecast-days site-local days (messages
    due, users, users the daily cap holds back), with the warnings audience-empty,
    audience-shrinks, sms-segments and cap-forecast.

    Drift comes first: tasks paused outside git (`campaigns pause`) and applies refused since
    the last one that succeeded (the repository is ahead of the state).

    Exit codes: 0 (with --detailed-exitcode: no changes), 2 changes (--detailed-exitcode),
    3 blockers that would refuse the apply after the merge (--fail-on-blockers), 1 error.
    """
    now = parse_now(now_text) if now_text else None
    with problems_reported():
        result = plan_repository(repo, state_url, now=now, forecast_days=forecast_days)
    with gc_paused():  # rendering 10,000 changes builds many objects and no cycles
        if out is not None:
            planfile.save(result, out)
        colour = use_color(sys.stdout, flag=color) and output_format == "text"
        click.echo(render.render(result, output_format, color=colour), nl=False, color=colour)
    if out is not None:
        click.echo(f"Saved the plan to {out}; apply exactly this with `campaigns apply {out}`.", err=True)
    if fail_on_blockers:
        refusing = result.blockers(ignore=(NEEDS_APPROVAL,))
        if refusing:
            parts = [f"{code} on {', '.join(c.address for c in changes[:8])}" + (f" and {len(changes) - 8} more" if len(changes) > 8 else "")
                     for code, changes in refusing.items()]
            click.echo(f"The apply after a merge would be refused: {'; '.join(parts)}.", err=True)
            sys.exit(3)
    if detailed_exitcode and result.has_changes:
        sys.exit(2)
