"""``campaigns test TASK``: the pilot test. Send the task's notifications to its testers."""

from __future__ import annotations

import json
from pathlib import Path

import click

from engine.commands.common import format_option, load_repo, open_store, repo_option, state_option
from engine.errors import CampaignsError


@click.command("test")
@click.argument("task")
@click.option(
    "--tester",
    "testers",
    multiple=True,
    metavar="USER_ID",
    help="Send to this tester (repeatable). Default: the task's `testers`, else its site's.",
)
@repo_option
@state_option
@format_option(help="text: one line per tester and creative; json: every message and the recorded run.")
def test(task: str, testers: tuple[str, ...], repo: Path, state_url: str | None, output_format: str) -> None:
    """Pilot-test TASK: render every creative for each tester and send it through the channel.

    Testers known to the user directory get their own attributes, others the template's example
    values. The result is recorded against the task's current content (task, creatives,
    templates); a passing test moves a draft task to testing and lets `apply` run that content.
    Works before the task was ever applied. Exits 1 if any message could not be rendered or sent.
    """
    from engine.pilot import run_pilot_test

    repository = load_repo(repo, state_url)
    with open_store(repo, state_url, platform=repository.platform.data) as store:
        outcome = run_pilot_test(repository, store, task, testers)
    if output_format == "json":
        click.echo(json.dumps(outcome.to_json(), indent=2, ensure_ascii=False))
    else:
        click.echo(f"Pilot test of task {outcome.task_id} ({outcome.channel}), content {outcome.content_digest[:12]}:")
        for send in outcome.sends:
            if send.passed:
                click.echo(f"  sent    {send.tester} <- {send.creative} ({send.profile}) as {send.message_id}")
                if send.title is not None:
                    click.echo(f"          title: {send.title}")
                if send.content is not None:
                    click.echo(f"          content: {send.content}")
                if send.redirection is not None:
                    shown = send.redirection if isinstance(send.redirection, str) else ", ".join(send.redirection)
                    click.echo(f"          redirection: {shown}")
            else:
                click.echo(f"  FAILED  {send.tester} <- {send.creative}: {send.error}")
        for code, message in outcome.warnings:
            click.echo(f"warning: {code}: {message}")
    failed = [s for s in outcome.sends if not s.passed]
    if failed:
        raise CampaignsError(
            f"pilot test of {outcome.task_id} failed: {len(failed)} of {len(outcome.sends)} messages were not sent "
            f"({failed[0].tester} <- {failed[0].creative}: {failed[0].error}); the failure is recorded"
        )
    if output_format != "json":
        click.echo(f"Pilot test passed and recorded ({len(outcome.sends)} message{'s' if len(outcome.sends) != 1 else ''}).")
