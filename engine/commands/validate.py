"""``campaigns validate``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from engine.commands.common import fixed_clock, format_option, now_option, repo_option
from engine.terminal import console, is_terminal, use_color


@click.command()
@repo_option
@format_option(
    ("text", "json", "github"),
    help="text: file:line:col: code: message; json: machine-readable; github: workflow annotations.",
)
@click.option("--no-cache", is_flag=True, help="Check every file again instead of reusing unchanged files' results.")
@click.option(
    "--state",
    "state",
    metavar="URL",
    default=None,
    help="State database holding the user directory that audience rules are checked against "
    "(default: CAMPAIGNS_STATE, else platform.yaml's state).",
)
@now_option("Check as on this instant (ISO 8601 with a UTC offset): which task dates are in the past. Default: now.")
def validate(repo: Path, output_format: str, no_cache: bool, state: str | None, now_text: str | None) -> None:
    """Check every file of the repository and report every problem at once.

    Exits 0 when there is no error (warnings do not fail), 1 otherwise.
    """
    from engine.validation import report
    from engine.validation.pipeline import validate_repository

    clock = fixed_clock(now_text)
    progress = _ProgressBar() if is_terminal(sys.stderr) and output_format == "text" else None
    try:
        result = validate_repository(
            repo, use_cache=not no_cache, progress=progress, need_repository=False, state=state, clock=clock
        )
    finally:
        if progress:
            progress.close()
    if output_format == "json":
        click.echo(report.as_json(result.problems), nl=False)
    elif output_format == "github":
        click.echo(report.as_github(result.problems), nl=False)
        click.echo(report.summary(result.problems, result.files), err=True)
    else:
        colour = use_color(sys.stdout)
        click.echo(report.as_text(result.problems, result.files, color=colour), nl=False, color=colour)
    sys.exit(1 if result.has_errors else 0)


class _ProgressBar:
    """A progress bar on stderr for big repositories (only shown when there is a lot to check)."""

    def __init__(self) -> None:
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if total < 2000:
            return
        if self.bar is None:
            from rich.progress import Progress

            self.bar = Progress(transient=True, console=console(stderr=True))
            self.bar.start()
            self.task = self.bar.add_task("Checking files", total=total)
        self.bar.update(self.task, completed=done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
