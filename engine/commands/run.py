"""``campaigns run``: the executor service (or one pass of it with ``--once``)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from engine.commands.common import parse_now, repo_option, state_option
from engine.delivery.service import ServiceOptions, json_logs, log_line, run_service
from engine.errors import CampaignsError, UsageError


class LogReporter:
    """JSON lines on stderr, for logs that machines read: the start-up line, one per batch, one
    per occurrence's summary, notices and errors (``quiet``: errors only)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def occurrence(self, task: str, occurrence: str, total: int | None) -> None:
        pass

    def batch(self, event: dict[str, Any]) -> None:
        if not self.quiet:
            click.echo(log_line(event), err=True)

    def event(self, event: dict[str, Any]) -> None:
        if not self.quiet or event.get("level") in ("warning", "error"):
            click.echo(log_line(event), err=True)

    def finished(self, task: str, occurrence: str) -> None:
        pass

    def error(self, message: str) -> None:
        click.echo(log_line({"event": "error", "level": "error", "message": message}), err=True)


SHORT_STATUS = {"suppressed": "supp", "unconfirmed": "unconf", "expired": "exp"}
"""Status names in a progress bar narrower than NARROW columns."""
NARROW = 100


class ProgressReporter:
    """A rich progress bar per occurrence on the terminal. Its counts stay whole at 80 columns:
    the done/total column and the status breakdown keep their width, the task name gives way
    first (cut with an ellipsis), and below NARROW columns the bar is shorter, the elapsed time
    goes and status names shorten."""

    wants_total = True

    def __init__(self, console: Any = None) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        from rich.table import Column

        from engine.terminal import console as terminal_console

        self.console = console if console is not None else terminal_console(stderr=True)
        self.narrow = self.console.width < NARROW
        columns: list[Any] = [
            TextColumn("{task.description}", table_column=Column(ratio=1, min_width=8, no_wrap=True, overflow="ellipsis")),
            BarColumn(bar_width=10 if self.narrow else 20),
            MofNCompleteColumn(table_column=Column(no_wrap=True)),
            TextColumn("{task.fields[detail]}", table_column=Column(no_wrap=True, overflow="ellipsis")),
        ]
        if not self.narrow:
            columns.append(TimeElapsedColumn(table_column=Column(no_wrap=True)))
        self.progress = Progress(*columns, console=self.console, transient=False, expand=True)
        self.bars: dict[tuple[str, str], Any] = {}
        self.totals: dict[tuple[str, str], dict[str, int]] = {}

    def __enter__(self) -> ProgressReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def occurrence(self, task: str, occurrence: str, total: int | None) -> None:
        key = (task, occurrence)
        if key not in self.bars:
            self.bars[key] = self.progress.add_task(f"{task} {occurrence}", total=total, detail="")
            self.totals[key] = {}

    def batch(self, event: dict[str, Any]) -> None:
        if "task" not in event or "occurrence" not in event:
            return
        key = (event["task"], event["occurrence"])
        self.occurrence(*key, None)
        totals = self.totals[key]
        done = 0
        for name in ("sent", "failed", "suppressed", "capped", "expired", "unconfirmed"):
            totals[name] = totals.get(name, 0) + event.get(name, 0)
            done += event.get(name, 0)
        detail = self.detail(totals)
        self.progress.update(self.bars[key], advance=done, detail=detail)

    def detail(self, totals: dict[str, int]) -> str:
        """``1,200 sent, 3 failed`` (``1,200 sent 3 failed 2 supp`` when narrow)."""
        if self.narrow:
            return " ".join(f"{value:,} {SHORT_STATUS.get(name, name)}" for name, value in totals.items() if value)
        return ", ".join(f"{value:,} {name}" for name, value in totals.items() if value)

    def event(self, event: dict[str, Any]) -> None:
        """Start-up, summaries and notices as plain lines above the bars."""
        text = str(event.get("message") or json.dumps(event, default=str))
        prefix = {"warning": "[yellow]warning:[/yellow] ", "error": "[red]error:[/red] "}.get(event.get("level") or "", "")
        self.progress.console.print(prefix + _escape(text), highlight=False)

    def finished(self, task: str, occurrence: str) -> None:
        pass

    def error(self, message: str) -> None:
        self.progress.console.print(f"[red]error:[/red] {_escape(message)}", highlight=False)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


@click.command()
@repo_option
@state_option
@click.option("--once", is_flag=True, help="Do everything due at this instant, then exit (for cron and tests).")
@click.option(
    "--now",
    "now_text",
    metavar="ISO8601",
    help="Act as if it were this instant (with a UTC offset, e.g. 2026-12-01T09:30:00+08:00); "
    "the clock then runs on from it in real time. For tests and rehearsals, with --once or as a service.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    metavar="SECONDS",
    help="Seconds between polls of the service. Default: platform.yaml executor.poll_interval (30).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100_000),
    help="Deliveries claimed (and committed to the ledger) per batch. Default: platform.yaml executor.batch_size.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    envvar="CAMPAIGNS_EXECUTOR_WORKERS",
    help="Executor processes sharing the work through the ledger (one per core speeds up big fan-outs). "
    "Also $CAMPAIGNS_EXECUTOR_WORKERS. Default: platform.yaml executor.workers (1).",
)
@click.option("--task", "tasks", multiple=True, metavar="TASK", help="Deliver only this task (repeatable).")
@click.option(
    "--log",
    "log_mode",
    type=click.Choice(["auto", "json", "progress", "quiet"]),
    default="auto",
    show_default=True,
    help="auto: a progress bar on a terminal, else one JSON line per batch on stderr.",
)
@click.option(
    "--metrics-addr",
    metavar="HOST:PORT",
    help="Serve Prometheus metrics at http://HOST:PORT/metrics and a health check at /healthz "
    "(200 while the loop runs and the state answers, else 503), covering every worker. "
    "Port 0 picks a free port (logged at start-up).",
)
def run(**options: Any) -> None:
    """Deliver the notifications of running tasks: the executor service.

    It polls the state every interval and sends, inside the windows of open occurrences, to
    every member of each running task's audiences exactly once (ledger row and message id
    committed before the send); users not reached when an occurrence's last window closes are
    recorded as expired. SIGTERM or SIGINT stops it after the batch in hand (exit 0).

    Off a terminal (or with --log json) every line on stderr is a JSON object, from the first
    one on, errors included; a mistake on the command line is a plain one-line error.
    """
    try:
        _run(**options)
    except UsageError:
        raise
    except CampaignsError as problem:
        if not json_logs(options["log_mode"]):
            raise
        click.echo(log_line({"event": "error", "level": "error", "message": str(problem)}), err=True)
        sys.exit(problem.exit_code)
    except Exception as bug:  # a bug: still one JSON line off a terminal (CAMPAIGNS_DEBUG=1: the traceback)
        if not json_logs(options["log_mode"]) or os.environ.get("CAMPAIGNS_DEBUG"):
            raise
        message = f"internal error: {type(bug).__name__}: {bug} (a bug in campaigns; CAMPAIGNS_DEBUG=1 shows the traceback)"
        click.echo(log_line({"event": "error", "level": "error", "message": message}), err=True)
        sys.exit(1)


def _run(
    repo: Path,
    state_url: str | None,
    once: bool,
    now_text: str | None,
    interval: float | None,
    batch_size: int | None,
    workers: int | None,
    tasks: tuple[str, ...],
    log_mode: str,
    metrics_addr: str | None,
) -> None:
    start = parse_now(now_text) if now_text else None
    options = ServiceOptions(repo, state_url, once, start, interval, batch_size, tasks, log_mode, _reporter)
    run_service(options, workers=workers, metrics_addr=metrics_addr)


def _reporter(log_mode: str) -> Any:
    """What shows the executor's progress: a progress bar, JSON lines, or errors only."""
    return ProgressReporter() if log_mode == "progress" else LogReporter(quiet=log_mode == "quiet")
