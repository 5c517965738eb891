"""The executor service: the loop that runs executor passes until stopped, its signal
handling, and the supervisor of worker processes (``campaigns run`` parses its options, calls
``run_service`` and formats).

- One process: ``serve`` runs ``Executor.run_pass`` every poll interval (once with ``once``);
  SIGTERM / SIGINT stop it after the batch in hand, a second signal at once.
- ``workers > 1``: ``supervise`` forks that many processes sharing the work through the
  ledger's claims, passes signals on exactly once and exits with the first non-zero code.
- ``--metrics-addr``: the parent serves Prometheus metrics and ``/healthz`` for every worker
  (``engine.delivery.metrics``, imported after its multiprocess directory is set).

The service's own lines on stderr are JSON off a terminal (``log_line``), so every line of a
log parses.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from engine.clock import Clock
from engine.config.settings import resolve_state_url
from engine.delivery import metrics_setup
from engine.delivery.executor import Executor, PassSummary
from engine.errors import CampaignsError, UsageError
from engine.state import StateStore
from engine.terminal import is_terminal

WORKER_ENV = "CAMPAIGNS_EXECUTOR_WORKER"

Reporters = Callable[[str], Any]
"""``reporters(log_mode) -> reporter``: what shows the executor's progress (``json``,
``progress`` or ``quiet``); see ``engine.delivery.executor.Executor``."""


def log_time() -> str:
    """The wall-clock instant of a log line, ISO 8601 in UTC with milliseconds: ``2026-12-01T01:30:00.123Z``."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def log_line(event: dict[str, Any]) -> str:
    """One JSON log line: ``time``, ``level`` and ``event`` first, then the event's fields."""
    fields = {"time": log_time(), "level": event.get("level", "info"), "event": event.get("event", "log")}
    fields.update((key, value) for key, value in event.items() if key not in fields)
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False, default=str)


def notice(message: str, *, as_json: bool, event: str = "notice", level: str = "info", **fields: Any) -> None:
    """A line of the service itself on stderr: JSON off a terminal (so every line of the log
    parses), plain text on one."""
    if as_json:
        click.echo(log_line({"event": event, "level": level, **fields, "message": message}), err=True)
    else:
        click.echo(message, err=True)


def json_logs(log_mode: str) -> bool:
    """Whether the service's own lines are JSON: ``--log json``/``quiet``, or ``auto`` off a terminal."""
    return log_mode in ("json", "quiet") or (log_mode == "auto" and not is_terminal(sys.stderr))


def install_stop(stop: threading.Event, as_json: bool = True) -> None:
    """SIGTERM / SIGINT: stop after the batch in hand. A second one stops at once."""

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        stop.set()
        if not os.environ.get(WORKER_ENV):
            name = signal.Signals(signum).name
            notice(f"Stopping after the batch in hand ({name}).", as_json=as_json, event="stopping", signal=name)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@dataclass(frozen=True)
class ServiceOptions:
    """What every process of the service runs with (``campaigns run``'s options)."""

    repo: Path
    state_url: str | None
    once: bool  # one pass, then exit
    start: dt.datetime | None  # the clock's first instant (None: now)
    interval: float | None  # seconds between passes (None: platform.yaml's)
    batch_size: int | None
    tasks: tuple[str, ...]  # only these tasks (empty: all)
    log_mode: str  # auto | json | progress | quiet
    reporters: Reporters


def run_service(options: ServiceOptions, *, workers: int | None, metrics_addr: str | None) -> None:
    """``campaigns run``: one pass (``once``) or the service until SIGTERM / SIGINT, in this
    process or in ``workers`` forked ones. Exits the process with the workers' code when it
    supervises them."""
    repo, state_url, once, log_mode = options.repo, options.state_url, options.once, options.log_mode
    if metrics_addr is not None and once:
        raise UsageError("--metrics-addr serves metrics while the service runs; it does not work with --once")
    configured = _preflight(repo, state_url, options.tasks)
    if workers is None:
        workers = configured
    serving = _metrics_server(metrics_addr, repo, state_url, log_mode, options.start) if metrics_addr is not None else None
    loop = _Loop()

    def one(label: str | None = None) -> None:
        if serving is not None and label is not None:
            serving[0].httpd.socket.close()  # the parent serves; a worker does not hold the port
        serve(options, label, loop, serving is not None)

    try:
        if workers > 1:
            pids: list[int] = []
            if serving is not None:
                serving[0].health.alive = lambda: pids_alive_or_starting(pids, workers)
            sys.exit(supervise(workers, one, once, pids=pids, started=serving[0].start if serving else None,
                                  as_json=json_logs(log_mode)))
        if serving is not None:
            serving[0].health.alive = loop.problem
            serving[0].start()
        one()
    finally:
        if serving is not None:
            serving[0].stop()
            serving[1]()


class _Loop:
    """Whether the service's loop (in this process) is running, for /healthz."""

    def __init__(self) -> None:
        self.state = "starting"

    def problem(self) -> str | None:
        return None if self.state == "running" else f"the executor loop is {self.state}"


def pids_alive_or_starting(pids: list[int], workers: int) -> str | None:
    from engine.delivery.metrics import pids_alive

    if len(pids) < workers:
        return "the workers are starting"
    return pids_alive(pids)


def _metrics_server(addr: str, repo: Path, state_url: str | None, log_mode: str, start: dt.datetime | None) -> tuple[Any, Any]:
    """The bound (not yet serving) metrics server and the clean-up of its multiprocess directory.
    prometheus_client is imported only here, after its multiprocess directory is set."""
    try:
        host, port = metrics_setup.parse_addr(addr)
    except ValueError as problem:
        raise UsageError(f"--metrics-addr {problem}") from None
    clean_up = metrics_setup.prepare_multiprocess()
    from engine.delivery.metrics import Health, MetricsServer, StateProbe  # after its multiprocess directory is set

    url = resolve_state_url(repo, state_url)
    probe = StateProbe(lambda: StateStore.open(url, base_dir=repo, create=False))
    try:
        server = MetricsServer(host, port, Health(probe, lambda: "the executor loop is starting"), clock=Clock(start))
    except OSError as problem:
        clean_up()
        raise UsageError(f"--metrics-addr {addr}: cannot listen there: {problem.strerror or problem}") from None
    notice(
        f"Serving metrics at http://{server.address}/metrics and health at http://{server.address}/healthz",
        as_json=json_logs(log_mode),
        event="metrics",
        address=server.address,
    )
    return server, clean_up


def _preflight(repo: Path, state_url: str | None, tasks: tuple[str, ...]) -> int:
    """Refuse a ``--task`` the state does not know (a typo must not deliver nothing, silently);
    return ``executor.workers`` of the applied platform (1 before anything was applied)."""
    with StateStore.open(resolve_state_url(repo, state_url), base_dir=repo, create=False) as store:
        platform = store.resource("platform")
        known = set(store.task_states()) if tasks else set()
    unknown = [task for task in dict.fromkeys(tasks) if task not in known]
    if unknown:
        hint = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else " (see `campaigns status`)"
        names = ", ".join(repr(task) for task in unknown)
        what = "no such task" if len(unknown) == 1 else "no such tasks"
        raise UsageError(f"--task {names}: {what} in the state{extra}")
    executor = platform.body.get("executor", {}) if platform is not None else {}
    return int(executor.get("workers", 1))


def serve(options: ServiceOptions, label: str | None = None, loop: _Loop | None = None, metrics: bool = False) -> None:
    """The service loop in this process (``label``: which worker it is; ``metrics``: count for
    the metrics the parent serves)."""
    once, start, log_mode, repo = options.once, options.start, options.log_mode, options.repo
    stop = threading.Event()
    worker = label is not None
    install_stop(stop, as_json=worker or json_logs(log_mode))
    observer = None
    if metrics:
        from engine.delivery.metrics import ExecutorMetrics

        observer = ExecutorMetrics()
    if worker:
        _stop_with_parent(stop)
    if log_mode == "auto":
        log_mode = "progress" if is_terminal(sys.stderr) and not worker else "json"
    reporter = options.reporters(log_mode)
    clock = Clock(start)
    errors = 0
    with StateStore.open(resolve_state_url(repo, options.state_url), base_dir=repo, create=False) as store, _Entered(reporter):
        executor = Executor(
            store, repo, clock=clock, batch_size=options.batch_size, stop=stop, reporter=reporter, tasks=options.tasks or None,
            observer=observer,
        )
        with executor:
            _log_start(reporter, executor, once=once, start=start, label=label)
            if loop is not None:
                loop.state = "running"
            while True:
                try:
                    summary = executor.run_pass()
                    if observer is not None:
                        observer.pass_finished()
                except CampaignsError as problem:
                    if once:
                        raise
                    reporter.error(str(problem))
                    summary = PassSummary(errors=[str(problem)])
                except Exception as bug:
                    if once:
                        raise
                    reporter.error(f"internal error: {type(bug).__name__}: {bug}")
                    summary = PassSummary(errors=[str(bug)])
                errors = len(summary.errors)
                if once:
                    break
                wait = options.interval if options.interval is not None else _poll_interval(executor)
                if stop.wait(wait):
                    break
            if loop is not None:
                loop.state = "stopping"
    if not once:
        reporter.event({"event": "stop", "level": "info", "executor": executor.executor_id, "message": "stopped"})
    if once:
        text = summary.line()
        click.echo("\n".join(f"{label}: {line}" for line in text.splitlines()) if label else text)
    if once and errors:
        raise CampaignsError(f"{errors} task(s) could not be delivered: " + "; ".join(summary.errors))


def _log_start(reporter: Any, executor: Any, *, once: bool, start: dt.datetime | None, label: str | None) -> None:
    """The start-up line: the state (no password), the executor's id, the provider of each
    channel and the running tasks."""
    try:
        info = executor.describe()
    except CampaignsError as problem:
        info = {"state": executor.store.display_url, "executor": executor.executor_id, "problem": str(problem)}
    providers = info.get("providers") or {}
    shown = "; ".join(f"{channel}: {provider}" for channel, provider in providers.items()) or "none (no platform applied)"
    running = info.get("running_tasks") or []
    mode = "one pass" if once else "service"
    message = (
        f"campaigns run ({mode}{', ' + label if label else ''}): executor {info['executor']} on {info['state']}"
        + (f" as of {start.isoformat()}" if start is not None else "")
        + f"; providers: {shown}; running tasks: {', '.join(running) or 'none'}"
    )
    event: dict[str, Any] = {"event": "start", "level": "info", "mode": "once" if once else "service"}
    if label:
        event["worker"] = label
    if start is not None:
        event["now"] = start.isoformat()
    event.update(info)
    event["message"] = message
    reporter.event(event)


class _Entered:
    def __init__(self, reporter: Any) -> None:
        self.reporter = reporter

    def __enter__(self) -> Any:
        enter = getattr(self.reporter, "__enter__", None)
        return enter() if enter else self.reporter

    def __exit__(self, *exc: object) -> None:
        leave = getattr(self.reporter, "__exit__", None)
        if leave:
            leave(*exc)


def _poll_interval(executor: Any) -> float:
    platform = executor._platform
    return float(platform.executor.poll_interval) if platform is not None else 30.0


def _stop_with_parent(stop: threading.Event) -> None:
    """A worker whose parent died (even by SIGKILL) stops after the batch in hand."""
    parent = os.getppid()

    def watch() -> None:
        while not stop.wait(1.0):
            if os.getppid() != parent:
                stop.set()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def supervise(
    workers: int, one: Any, once: bool, *, pids: list[int] | None = None, started: Any = None, as_json: bool = False
) -> int:
    """Fork ``workers`` executor processes that share the work through the ledger's claims
    (each has its own executor id, connections and provider). The heavy modules are imported
    already (this module imports the executor), so the children start at once. The children run in their own process group: a
    terminal's Ctrl-C reaches this parent, which passes SIGTERM / SIGINT on exactly once.
    The exit code is the first non-zero one of the children."""
    began = time.monotonic()
    pids = [] if pids is None else pids
    for number in range(1, workers + 1):
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                os.setpgid(0, 0)
                os.environ[WORKER_ENV] = str(number)
                one(f"worker {number}")
                code = 0
            except CampaignsError as problem:
                notice(f"Error: worker {number}: {problem}", as_json=as_json, event="error", level="error", worker=f"worker {number}")
            except SystemExit as done:
                code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
            except BaseException as bug:  # noqa: BLE001 - never a traceback, never back into click
                notice(f"Internal error in worker {number}: {type(bug).__name__}: {bug}", as_json=as_json, event="error",
                       level="error", worker=f"worker {number}")
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        pids.append(pid)
    if started is not None:
        started()  # (a thread started before forking would be missing in the children)

    def forward(signum: int, _frame: Any) -> None:  # the workers decide: a second signal stops them at once
        for pid in pids:
            try:
                os.kill(pid, signum)
            except OSError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    if once:
        click.echo(f"{workers} workers finished in {time.monotonic() - began:.1f} s.")
    return next((code for code in codes if code != 0), 0)
