"""``campaigns state list | show ADDRESS | history | unlock LOCK_ID``.

The state subcommands read ``platform.yaml`` alone to find the state, so they work on a
repository that does not validate, and they never create a state that does not exist: one that
does not exist yet reads as empty (a state URL whose folder does not exist is an error).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from engine.commands.common import echo_json, format_option, open_store, repo_option, state_option, table
from engine.errors import UsageError
from engine.state.records import utc_iso


@click.group("state")
def state() -> None:
    """Inspect the state (what the last applies stored) and break a stale lock."""


@state.command("list")
@repo_option
@state_option
@format_option(help="text: one resource per line; json: lineage, serial and every resource.")
def list_(repo: Path, state_url: str | None, output_format: str) -> None:
    """List every resource the state holds, with the serial of the apply that last changed it."""
    with open_store(repo, state_url, create=False, missing_ok=True) as store:
        meta = store.meta()
        exists = store.exists
        display = store.display_url
        resources = store.resources()
        statuses = store.task_states()
    rows = []
    for address, stored in resources.items():
        status = statuses[stored.id].status if stored.kind == "task" and stored.id in statuses else None
        rows.append((address, stored, status))
    if output_format == "json":
        echo_json(
            {
                "lineage": meta.lineage,
                "serial": meta.serial,
                "resources": [{**stored.to_json(), **({"status": status} if status else {})} for address, stored, status in rows],
            }
        )
        return
    if not exists:
        click.echo(f"No state at {display} yet: nothing has been applied.")
        return
    if not rows:
        click.echo(f"The state (serial {meta.serial}) holds no resources yet.")
        return
    click.echo(
        table(
            [[address, str(stored.serial), stored.digest[:12], status or ""] for address, stored, status in rows],
            ["ADDRESS", "SERIAL", "DIGEST", "STATUS"],
        ),
        nl=False,
    )


@state.command("show")
@click.argument("address")
@repo_option
@state_option
@format_option(help="text: the stored body as YAML-like JSON; json: the stored record.")
def show(address: str, repo: Path, state_url: str | None, output_format: str) -> None:
    """Show what the state holds for ADDRESS (e.g. task.flash-sale-push, creative.flash-a, platform)."""
    with open_store(repo, state_url, create=False, missing_ok=True) as store:
        stored = store.resource(address)
        if stored is None:
            import difflib

            known = list(store.resource_digests())
            hint = difflib.get_close_matches(address, known, n=1)
            raise UsageError(
                f"the state holds no {address!r}"
                + (f"; did you mean {hint[0]!r}?" if hint else " (see `campaigns state list`)")
            )
        task_state = store.task_states().get(stored.id) if stored.kind == "task" else None
        runs = store.pilot_tests(stored.id) if stored.kind == "task" else []
    record: dict[str, Any] = stored.to_json()
    if task_state is not None:
        record["status"] = task_state.to_json()
        if runs:
            record["last_pilot_test"] = runs[-1].to_json()
    record["body"] = stored.body
    if output_format == "json":
        echo_json(record)
        return
    click.echo(f"# {stored.address} (serial {stored.serial}, digest {stored.digest[:12]})")
    if task_state is not None:
        click.echo(f"# status: {task_state.status} since {utc_iso(task_state.since)}")
        if runs:
            last = runs[-1]
            click.echo(f"# last pilot test: {utc_iso(last.tested_at)}, {'passed' if last.passed else 'failed'}")
    click.echo(json.dumps(stored.body, indent=2, ensure_ascii=False))


@state.command("history")
@repo_option
@state_option
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Only the last N applies.")
@format_option(help="text: one apply per line; json: every apply with its approval and changes.")
def history(repo: Path, state_url: str | None, limit: int | None, output_format: str) -> None:
    """Show the applies recorded in the state, oldest first, with who approved them and why,
    and the emergency pauses and resumes made outside git (who, when, why)."""
    from engine.state import control

    with open_store(repo, state_url, create=False, missing_ok=True) as store:
        entries = store.history(limit, with_changes=output_format == "json")
        controls = control.events(store, limit)
    if output_format == "json":
        applies = [entry.to_json() for entry in entries]
        outside = [{"event": event.action, **event.to_json()} for event in controls]
        echo_json(sorted(applies + outside, key=lambda item: item.get("applied_at") or item.get("at") or ""))
        return
    if not entries and not controls:
        click.echo("No applies recorded yet.")
        return
    rows = []
    for entry in entries:
        approval = entry.approval
        if approval is None:
            who = "-"
        elif approval.kind == "github":
            who = f"PR #{approval.pr_number} by {approval.author}, merged by {approval.merged_by}"
            if approval.merge_commit:
                who += f" ({approval.merge_commit[:10]})"
        else:
            who = f"approved by {approval.approved_by}"
        s = entry.summary
        counts = f"+{s.get('create', 0)} ~{s.get('update', 0)} -{s.get('delete', 0)}"
        reason = (approval.reason or "").strip().splitlines()[0][:60] if approval and approval.reason else ""
        rows.append([str(entry.serial), utc_iso(entry.applied_at) or "", entry.applied_by, counts, who, reason])
    for event in controls:  # outside git: no approval, the reason is the person's own
        what = f"{event.action} task.{event.task_id}"
        rows.append([str(event.serial), utc_iso(event.at) or "", f"{event.actor}@{event.host}", what, "outside git", event.reason[:60]])
    rows.sort(key=lambda row: row[1])
    click.echo(table(rows, ["SERIAL", "APPLIED AT", "BY", "CHANGES", "APPROVAL", "REASON"]), nl=False)


@state.command("unlock")
@click.argument("lock_id")
@repo_option
@state_option
def unlock(lock_id: str, repo: Path, state_url: str | None) -> None:
    """Break a stale state lock LOCK_ID (its id is in the message of the apply that found it held).

    On PostgreSQL this also ends the session still holding it; on SQLite it is refused while the
    holding process is alive.
    """
    with open_store(repo, state_url, create=False) as store:
        removed = store.unlock(lock_id)
    click.echo(f"Removed the lock held by {removed.describe()}.")
    sys.stdout.flush()
