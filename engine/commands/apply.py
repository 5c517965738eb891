"""``campaigns apply [PLAN_FILE]``: write the desired state, all or nothing, with approval."""

from __future__ import annotations

from pathlib import Path

import click

from engine.apply.applier import ApplyRefused, apply_repository
from engine.apply.approval import Evidence
from engine.commands.common import problems_reported, repo_option, state_option


@click.command()
@click.argument("plan_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@repo_option
@state_option
@click.option(
    "--event",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="GitHub pull_request event JSON proving the merge (default: $GITHUB_EVENT_PATH). "
    "The pull request must be merged into the main_branch already applied in the state "
    "(the first apply: the repository's default branch, not by its own author).",
)
@click.option("--approved-by", metavar="NAME", help="Who approved the change (for pipelines without GitHub); needs --reason.")
@click.option("--reason", metavar="TEXT", help="Why the change may run; recorded in the history with --approved-by.")
@click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    metavar="SECONDS",
    help="Wait this long for another apply to release the state lock (0: fail at once, naming the holder).",
)
def apply(
    plan_file: Path | None,
    repo: Path,
    state_url: str | None,
    event: Path | None,
    approved_by: str | None,
    reason: str | None,
    lock_timeout: float,
) -> None:
    """Apply the repository's desired state (or exactly the saved PLAN_FILE) to the state.

    One transaction under the state lock: every change is written, or none is. A saved plan is
    refused when the state or the repository changed since it was made. Changes need approval
    evidence (the merged pull request's event, or --approved-by with --reason) and every task
    that will run needs a passing pilot test of its current content; a refused apply names every
    blocker. Without changes, apply says so and needs no approval.
    """
    evidence = Evidence.from_options(str(event) if event else None, approved_by, reason)
    try:
        with problems_reported():
            result = apply_repository(repo, state_url, evidence=evidence, plan_file=plan_file, lock_timeout=lock_timeout)
    except ApplyRefused as refused:
        for line in refused.details:
            click.echo(f"  {line}", err=True)
        raise
    if result.applied:
        for change in result.plan.actionable:
            status = f"  {change.status.describe()}" if change.status is not None else ""
            click.echo(f"{change.marker} {change.address}{status}")
        if result.approval is not None:
            approval = result.approval
            if approval.kind == "github":
                click.echo(
                    f"Approved by pull request #{approval.pr_number} ({approval.author}, merged by {approval.merged_by})."
                )
            else:
                click.echo(f"Approved by {approval.approved_by}.")
    click.echo(result.message())
