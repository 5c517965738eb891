"""``campaigns users``: the user directory (``import`` a CSV, ``info`` about what is there)."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from engine.commands.common import format_option, repo_option
from engine.terminal import console, is_terminal

if TYPE_CHECKING:
    from collections.abc import Iterator

    from engine.state import StateStore

state_option = click.option(
    "--state",
    "state",
    metavar="URL",
    help="State database URL (default: $CAMPAIGNS_STATE, then platform.yaml 'state', then "
    "sqlite:///.campaigns/state.db in the repository). platform.yaml 'user_directory' puts the "
    "directory in another database.",
)


@click.group()
def users() -> None:
    """The user directory: who can be reached, their attributes and opt-outs."""


@contextmanager
def _directory(repo: Path, state: str | None) -> Iterator[StateStore]:
    """The store holding the directory: platform.yaml ``user_directory`` if set, else the state."""
    from engine.config.settings import locate, read_platform
    from engine.state import StateStore

    platform = read_platform(repo)
    url = locate(platform, repo, state_option=state)
    store = StateStore.open(url, repo)
    try:
        yield store
    finally:
        store.close()


@users.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--replace",
    is_flag=True,
    help="Make the directory exactly this file (users not in it are removed). "
    "Default: merge (add new users; replace the listed users' attributes and opt-outs).",
)
@click.option(
    "--allow-shrink",
    is_flag=True,
    help="With --replace: allow removing more than half of the directory (refused by default: "
    "an empty or truncated export would wipe it).",
)
@repo_option
@state_option
def import_(file: Path, replace: bool, allow_shrink: bool, repo: Path, state: str | None) -> None:
    """Load users from FILE, a CSV whose first row names the columns.

    user_id is required (at most 32 characters, unique); opt_out lists channels separated by |
    (push, sms, inbox-ewallet, inbox-miniprogram); every other column is an attribute, and an
    empty cell is a missing attribute. A file with any bad row is rejected whole, and so is a
    file that ends inside a quoted cell. --replace refuses to remove more than half of the
    directory unless --allow-shrink is given.
    """
    from engine.delivery.directory import import_users

    with _directory(repo, state) as store:
        if is_terminal(sys.stdout):
            result = _with_progress_bar(lambda progress: import_users(store, file, replace=replace, allow_shrink=allow_shrink, progress=progress), file)
        else:
            result = import_users(store, file, replace=replace, allow_shrink=allow_shrink)
    click.echo(result.summary())


def _with_progress_bar(run: Any, file: Path) -> Any:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=True, console=console()) as bar:
        task = bar.add_task(f"Importing {file.name}", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return run(progress)


@users.command("info")
@repo_option
@state_option
@format_option()
def info(repo: Path, state: str | None, output_format: str) -> None:
    """How many users the directory has, their attributes, and the last import."""
    import json

    from engine.delivery.directory import directory_info

    with _directory(repo, state) as store:
        found = directory_info(store)
        where = store.display_url
    if output_format == "json":
        click.echo(json.dumps({"directory": where, "imported": found.to_json() if found else None}, indent=2))
        return
    if found is None:
        click.echo(f"No user directory in {where} yet; load one with: campaigns users import FILE.csv")
        return
    names = ", ".join(found.attributes) or "none"
    when = found.last_import.strftime("%Y-%m-%d %H:%M UTC") if found.last_import else "?"
    click.echo(f"{found.users:,} users in {where}\nAttributes: {names}\nLast import: {found.last_source} at {when}")
