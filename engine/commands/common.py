"""Options and helpers shared by the click commands."""

from __future__ import annotations

import sys
from pathlib import Path

import click

repo_option = click.option(
    "--repo",
    "repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    show_default="current directory",
    envvar="CAMPAIGNS_REPO",
    help="The campaigns repository to work on.",
)


def stdout_is_tty() -> bool:
    return sys.stdout.isatty()


def print_problems(problems: list, files: int) -> None:
    """Validation problems on stderr, for commands that refuse an invalid repository."""
    from engine.validation.report import as_text

    click.echo(as_text(problems, files, color=sys.stderr.isatty()), err=True, nl=False)
