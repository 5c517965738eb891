"""``campaigns pause`` and ``campaigns resume``: the emergency stop, outside git."""

from __future__ import annotations

from pathlib import Path

import click

from engine.commands.common import echo_json, format_option, open_store, repo_option, state_option


def _options(action: str):
    def decorate(function):
        function = click.option(
            "--lock-timeout",
            type=click.FloatRange(min=0),
            default=10.0,
            show_default=True,
            metavar="SECONDS",
            help="Wait at most this long for a running apply to release the state lock (then fail, naming it).",
        )(function)
        function = click.option("--by", metavar="NAME", help="Who does this (default: the OS user); goes into the history.")(function)
        function = click.option(
            "--reason", metavar="TEXT", required=True, help=f"Why you {action} (required); goes into the history."
        )(function)
        function = click.option("--site", metavar="SITE", help="With --all: only the tasks of this site.")(function)
        function = click.option("--all", "every", is_flag=True, help=f"{action.capitalize()} every task the state knows (not completed ones).")(function)
        function = format_option()(function)
        function = state_option(function)
        function = repo_option(function)
        return click.argument("tasks", nargs=-1, metavar="TASK...")(function)

    return decorate


@click.command()
@_options("pause")
def pause(tasks, repo: Path, state_url, output_format, every, site, reason, by, lock_timeout) -> None:
    """Emergency stop: pause TASK... (or --all [--site SITE]) at once, outside git.

    Written to the state immediately: no pull request, approval or pilot test. The executor
    stops sending a paused task within 2 seconds, also in the middle of a fan-out (the batch in
    hand is finished or given back, never lost or sent twice). The task stays paused through
    later applies, whatever its file says, until `campaigns resume TASK --reason TEXT`; every
    plan shows it as drift, and `campaigns status` as `paused (emergency)`."""
    from engine.apply.emergency import pause as run_pause

    with open_store(repo, state_url, create=False) as store:
        result = run_pause(store, tasks, reason=reason, by=by, every=every, site=site, lock_timeout=lock_timeout)
    _show(result, output_format)


@click.command()
@_options("resume")
def resume(tasks, repo: Path, state_url, output_format, every, site, reason, by, lock_timeout) -> None:
    """Lift the emergency pause of TASK... (or --all [--site SITE]).

    Each task is again what git made it: running if its file says active and its last apply
    made it running (including applies made while it was paused), paused if its file says so."""
    from engine.apply.emergency import resume as run_resume

    with open_store(repo, state_url, create=False) as store:
        result = run_resume(store, tasks, reason=reason, by=by, every=every, site=site, lock_timeout=lock_timeout)
    _show(result, output_format)


def _show(result, output_format: str) -> None:
    if output_format == "json":
        echo_json(result.to_json())
        return
    verb = "Paused" if result.action == "pause" else "Resumed"
    for task_id in result.changed:
        click.echo(f"{verb} task.{task_id} (by {result.by} at {result.at}).")
    for task_id, why in result.unchanged.items():
        click.echo(f"task.{task_id}: {why}")
    if not result.changed:
        click.echo(f"Nothing to {result.action}.")
    elif result.action == "pause":
        click.echo(
            "The executor stops sending within 2 seconds. The tasks stay paused through applies until "
            "`campaigns resume TASK --reason TEXT`."
        )
