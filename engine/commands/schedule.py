"""``campaigns schedule``: when a task delivers, as a table, JSON or an iCalendar file."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import click

from engine.commands.common import format_option, repo_option
from engine.errors import UsageError
from engine.terminal import console

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}\Z")


def parse_date(option: str, text: str | None) -> dt.date | None:
    """``YYYY-MM-DD`` only: Python would also take ``20261201`` or ``2026-W49``, which nobody means."""
    if text is None:
        return None
    try:
        if not _ISO_DATE.match(text):
            raise ValueError
        return dt.date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a date; expected YYYY-MM-DD, e.g. 2026-12-01") from None


@click.command()
@click.argument("task")
@click.option(
    "--from",
    "start",
    metavar="DATE",
    help="Only occurrences on or after this date (YYYY-MM-DD, site time zone). "
    "A one-time task's single occurrence is shown whole if any of its dates is in the range.",
)
@click.option("--to", "finish", metavar="DATE", help="Only occurrences on or before this date (YYYY-MM-DD, inclusive).")
@format_option(
    ("table", "json", "ics"),
    "table",
    "table: for people; json: {task, timezone, occurrences} with UTC offsets; "
    "ics: an iCalendar file with one event per delivery window.",
)
@repo_option
def schedule(task: str, start: str | None, finish: str | None, output_format: str, repo: Path) -> None:
    """Print when TASK delivers: each occurrence and its delivery windows in the site's time zone.

    Occurrence keys are the date (YYYY-MM-DD), or "once" for a one-time task. Times that fall in a
    daylight-saving gap are shown where they really open.
    """
    from engine.schedule.occurrences import occurrences_between
    from engine.validation.pipeline import InvalidRepository, load_repository

    first, last = parse_date("--from", start), parse_date("--to", finish)
    if first and last and first > last:
        raise UsageError(f"--from {first} is after --to {last}; nothing can be in that range")
    try:
        repository = load_repository(repo)
    except InvalidRepository as problem:
        from engine.commands.common import print_problems

        print_problems(problem.problems, len({p.file for p in problem.problems}))
        raise
    resource = repository.tasks.get(task)
    if resource is None:
        import difflib

        hint = difflib.get_close_matches(task, list(repository.tasks), n=1)
        raise UsageError(
            f"no task {task!r} in {repo}"
            + (f"; did you mean {hint[0]!r}?" if hint else " (a task is campaigns/<campaign>/<task>.yaml)")
        )
    model = resource.model
    timezone = repository.platform.model.sites[model.site].timezone
    found = occurrences_between(model.schedule, timezone, first, last)

    from engine.schedule import render

    if output_format == "json":
        click.echo(json.dumps(render.to_json(task, timezone, found), indent=2, ensure_ascii=False))
    elif output_format == "ics":
        click.echo(render.to_ics(task, model, timezone, found), nl=False)
    else:
        console(highlight=False).print(render.render_table(task, timezone, found))
