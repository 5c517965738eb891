"""Options and helpers shared by the click commands."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from engine.config.repository import Repository
    from engine.state import StateStore

repo_option = click.option(
    "--repo",
    "repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    show_default="current directory",
    envvar="CAMPAIGNS_REPO",
    help="The campaigns repository to work on.",
)


def print_problems(problems: list, files: int) -> None:
    """Validation problems on stderr, for commands that refuse an invalid repository."""
    from engine.validation.report import as_text

    click.echo(as_text(problems, files, color=sys.stderr.isatty()), err=True, nl=False)


state_option = click.option(
    "--state",
    "state_url",
    metavar="URL",
    help="State database URL: sqlite:///path (relative to the repository) or postgresql://user@host/db. "
    "Default: $CAMPAIGNS_STATE, else platform.yaml `state`, else sqlite:///.campaigns/state.db.",
)


def format_option(choices: tuple[str, ...] = ("text", "json"), default: str = "text", help: str | None = None):
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(list(choices)),
        default=default,
        show_default=True,
        help=help or "text for people, json for programs.",
    )


def load_repo(repo: Path, state_url: str | None = None, files: Any = None, *, use_cache: bool = True) -> Repository:
    """The validated repository; its problems are printed (and InvalidRepository raised) if it has errors.

    ``state_url`` (``--state``) locates the user directory that audience rules are checked against;
    ``files``: the repository's files if the caller has read them already; ``use_cache=False``
    (apply) validates every file without reading a cached result."""
    from engine.config.repository import InvalidRepository, load_repository

    try:
        return load_repository(repo, state=state_url, files=files, use_cache=use_cache)
    except InvalidRepository as problem:
        from engine.commands.common import print_problems

        print_problems(problem.problems, len({p.file for p in problem.problems}))
        raise


@contextmanager
def open_store(
    repo: Path, state_url: str | None, *, platform: dict[str, Any] | None = None, create: bool = True
) -> Iterator[StateStore]:
    """The state of the repository at ``repo`` (see engine.config.settings for which one)."""
    from engine.config.settings import resolve_state_url
    from engine.state import StateStore

    url = resolve_state_url(repo, state_url, platform=platform)
    store = StateStore.open(url, base_dir=repo, create=create)
    try:
        yield store
    finally:
        store.close()


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def iso(moment) -> str | None:
    """An instant as ISO 8601 UTC (``...Z``); SQLite hands back naive UTC datetimes."""
    from engine.state.records import utc_iso

    return utc_iso(moment)


def table(rows: list[list[str]], header: list[str]) -> str:
    """Plain aligned columns (no colour, so it pipes cleanly)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    return "\n".join(lines) + "\n"
