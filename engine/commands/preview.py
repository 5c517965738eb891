"""``campaigns preview``: one HTML page with every creative rendered for the testers, and the schedule."""

from __future__ import annotations

from pathlib import Path

import click

from engine.commands.common import now_option, parse_now, problems_reported, repo_option, state_option
from engine.preview import preview_repository
from engine.preview.render import to_text


@click.command()
@click.argument("tasks", nargs=-1, metavar="[TASK]...")
@click.option(
    "--tester",
    "testers",
    multiple=True,
    metavar="USER_ID",
    help="Render for this tester (repeatable). Default: each task's `testers`, else its site's.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Write DIR/index.html. Default: .campaigns/preview/ in the repository.",
)
@repo_option
@state_option
@now_option(help="Plan (and forecast from) this instant (ISO 8601 with a UTC offset); default: now.")
@click.option(
    "--forecast-days",
    type=click.IntRange(0, 366),
    default=None,
    metavar="N",
    help="Days of cap forecast, as `campaigns plan --forecast-days` (default: the plan's, 7).",
)
def preview(
    tasks: tuple[str, ...],
    testers: tuple[str, ...],
    out_dir: Path | None,
    repo: Path,
    state_url: str | None,
    now_text: str | None,
    forecast_days: int | None,
) -> None:
    """Write a self-contained HTML page previewing TASKs (default: every task).

    For each task: each creative rendered for each tester the way the phone shows it (push card,
    SMS bubble with segments and encoding, inbox item), length bars against the template's
    limits, failures in place (missing variable, too long), the schedule as month calendars in
    the site's time zone, and the plan's audience sizes, warnings, changes and cap forecast.
    Prints a short text version (for a CI job summary); never writes to the state.
    """
    now = parse_now(now_text) if now_text else None
    with problems_reported():
        page, target = preview_repository(
            repo, state_url, tasks, testers, out_dir=out_dir, now=now, forecast_days=forecast_days
        )
    click.echo(to_text(page), nl=False)
    click.echo(
        f"Wrote {target} ({len(page.tasks)} task{'s' if len(page.tasks) != 1 else ''}); open {target.resolve().as_uri()} in a browser.",
        err=True,
    )
