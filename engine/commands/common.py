"""Options and helpers shared by the click commands."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from engine.terminal import use_color

if TYPE_CHECKING:
    import datetime as dt

    from engine.clock import Clock
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

    click.echo(as_text(problems, files, color=use_color(sys.stderr)), err=True, nl=False, color=use_color(sys.stderr))


state_option = click.option(
    "--state",
    "state_url",
    metavar="URL",
    help="State database URL: sqlite:///path (relative to the repository) or postgresql://user@host/db. "
    "Default: $CAMPAIGNS_STATE, else platform.yaml `state`, else sqlite:///.campaigns/state.db.",
)


def now_option(help: str):
    """``--now ISO8601``: act as if it were this instant (a UTC offset is required)."""
    return click.option("--now", "now_text", metavar="ISO8601", help=help)


def parse_now(text: str) -> dt.datetime:
    """The instant of ``--now`` (ISO 8601 with a UTC offset, ``Z`` allowed), or a UsageError."""
    from engine.clock import parse_instant
    from engine.errors import UsageError

    try:
        return parse_instant(text)
    except ValueError as problem:
        raise UsageError(f"--now {problem}") from None


def fixed_clock(now_text: str | None) -> Clock:
    """The clock of a command that answers for one instant: ``--now``, else the machine's time
    as the command starts (read once, so every part of the answer is as at the same instant)."""
    from engine.clock import Clock, now

    return Clock.fixed(parse_now(now_text) if now_text else now())


def format_option(choices: tuple[str, ...] = ("text", "json"), default: str = "text", help: str | None = None):
    """``--format`` (every command's, so they all read alike): one of ``choices``, shown with its default."""
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(list(choices)),
        default=default,
        show_default=True,
        help=help or "text for people, json for programs.",
    )


@contextmanager
def problems_reported() -> Iterator[None]:
    """A repository that does not validate: its problems on stderr, then InvalidRepository goes on
    up (the CLI's error boundary ends the command)."""
    from engine.validation.pipeline import InvalidRepository

    try:
        yield
    except InvalidRepository as problem:
        print_problems(problem.problems, len({p.file for p in problem.problems}))
        raise


def load_repo(repo: Path, state_url: str | None = None, files: Any = None, *, use_cache: bool = True) -> Repository:
    """The validated repository; its problems are printed (and InvalidRepository raised) if it has errors.

    ``state_url`` (``--state``) locates the user directory that audience rules are checked against;
    ``files``: the repository's files if the caller has read them already; ``use_cache=False``
    (apply) validates every file without reading a cached result."""
    from engine.validation.pipeline import load_repository

    with problems_reported():
        return load_repository(repo, state=state_url, files=files, use_cache=use_cache)


@contextmanager
def open_store(
    repo: Path,
    state_url: str | None,
    *,
    platform: dict[str, Any] | None = None,
    create: bool = True,
    missing_ok: bool = False,
    clock: Clock | None = None,
) -> Iterator[StateStore]:
    """The state of the repository at ``repo`` (see engine.config.settings for which one).

    Commands that only read pass ``create=False, missing_ok=True``: a state that does not exist
    yet reads as empty and nothing is created (see ``StateStore.open``)."""
    from engine.config.settings import resolve_state_url
    from engine.state import StateStore

    url = resolve_state_url(repo, state_url, platform=platform)
    store = StateStore.open(url, base_dir=repo, create=create, missing_ok=missing_ok, clock=clock)
    try:
        yield store
    finally:
        store.close()


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def table(rows: list[list[str]], header: list[str]) -> str:
    """Plain aligned columns (no colour, so it pipes cleanly)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    return "\n".join(lines) + "\n"
