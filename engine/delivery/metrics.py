"""Prometheus metrics of the executor (``campaigns run --metrics-addr``), with prometheus_client.

Two halves, so that ``--workers N`` is covered whole:

- what the executors *do* (messages by status, failures by reason, provider calls, the end of
  each pass) is counted by :class:`ExecutorMetrics`, the executor's observer, in every worker.
  prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by
  ``metrics_setup.prepare_multiprocess`` before prometheus_client is first imported) writes each process's
  values to files that the serving process adds up;
- what the *state* says (pending rows per occurrence, behind) is read from the state when
  Prometheus scrapes (:class:`StateCollector`), by the serving process alone: the state is
  shared by all workers, so reading it once is the aggregate.

``/healthz`` (:class:`Health`) answers 200 while the executor's loop is alive (every worker
process running) and its state answers a query, 503 otherwise, with the reason as text.

Import this module only after ``engine.delivery.metrics_setup.prepare_multiprocess()``
(``engine.delivery.service`` does).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from engine.clock import Clock
from engine.delivery.ledger import Ledger
from engine.delivery.report import executor_behind, task_report

if TYPE_CHECKING:
    from engine.state import StateStore

METRIC_NAMES = (
    "campaigns_messages_total",
    "campaigns_messages_failed_total",
    "campaigns_provider_request_seconds",
    "campaigns_occurrence_pending",
    "campaigns_executor_behind",
    "campaigns_last_pass_timestamp_seconds",
)
"""Every metric this module exposes (the dashboard and alert tests check against it)."""
SCRAPE_CACHE_S = 2.0
"""State-derived gauges are read at most this often, however often Prometheus scrapes."""

MESSAGES = Counter(
    "campaigns_messages",
    "Ledger rows settled by the executor: sent, failed, suppressed, capped, expired, unconfirmed.",
    ["task", "channel", "status"],
)
FAILED = Counter(
    "campaigns_messages_failed",
    "Failed messages by reason (missing-variable, too-long, provider-rejected, provider-unavailable, ...).",
    ["task", "channel", "reason"],
)
PROVIDER_SECONDS = Histogram(
    "campaigns_provider_request_seconds",
    "Duration of one provider call (one chunk of messages handed to the outbox or gateway), by outcome: "
    "ok, rejected (some messages refused), unavailable (the provider could not take them) or error.",
    ["channel", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
LAST_PASS = Gauge(
    "campaigns_last_pass_timestamp_seconds",
    "Unix time at which an executor last finished a pass over the state (the latest over all workers).",
    multiprocess_mode="max",
)


# --- what the executors do (every worker) ----------------------------------------------------


def provider_outcome(deliveries: Sequence[Any] | None) -> str:
    """``ok``, ``rejected``, ``unavailable`` (some could not be taken) or ``error`` (the call raised)."""
    if deliveries is None:
        return "error"
    outcome = "ok"
    for delivery in deliveries:
        if delivery.status == "sent":
            continue
        if getattr(delivery, "reason", None) == "provider-unavailable":
            return "unavailable"
        outcome = "rejected"
    return outcome


class ExecutorMetrics:
    """The executor's observer: counts what it settles and times its provider calls."""

    def settled(self, task: str, channel: str, counts: Mapping[str, int], failed_by_reason: Mapping[str, int] | None = None) -> None:
        """Rows that reached a final status (``counts``: status -> rows; pending is skipped)."""
        for status, count in counts.items():
            if count and status != "pending":
                MESSAGES.labels(task, channel, status).inc(count)
        for reason, count in (failed_by_reason or {}).items():
            if count:
                FAILED.labels(task, channel, reason).inc(count)

    def provider_call(self, channel: str, seconds: float, deliveries: Sequence[Any] | None) -> None:
        PROVIDER_SECONDS.labels(channel, provider_outcome(deliveries)).observe(seconds)

    def pass_finished(self, epoch: float | None = None) -> None:
        LAST_PASS.set(time.time() if epoch is None else epoch)


# --- what the state says (the serving process) -----------------------------------------------


class StateCollector:
    """``campaigns_occurrence_pending`` and ``campaigns_executor_behind``, read from the state."""

    def __init__(self, state: StateProbe, clock: Clock | None = None) -> None:
        self.state = state
        self.clock = clock or Clock()  # the executor's clock: with --now, the same moved instant
        self._cached: tuple[float, list[Any]] | None = None
        self._lock = threading.Lock()

    def describe(self) -> list[Any]:
        return []  # read at scrape time only

    def collect(self) -> Iterable[Any]:
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > SCRAPE_CACHE_S:
                self._cached = (time.monotonic(), self._read())
            return list(self._cached[1])

    def _read(self) -> list[Any]:
        pending = GaugeMetricFamily(
            "campaigns_occurrence_pending",
            "Users of an occurrence not delivered yet (pending ledger rows and members not claimed yet), "
            "for occurrences not closed.",
            labels=["task", "occurrence"],
        )
        behind = GaugeMetricFamily(
            "campaigns_executor_behind",
            "1 when a due occurrence is still pending past its last window (as `campaigns status` reports), else 0.",
        )
        try:
            values, late = self.state.read(lambda store: _pending_and_behind(store, self.clock))
        except Exception:  # noqa: BLE001 - an unreachable state shows in /healthz; the scrape still answers
            return [pending]
        for (task, occurrence), count in sorted(values.items()):
            pending.add_metric([task, occurrence], count)
        behind.add_metric([], 1.0 if late else 0.0)
        return [pending, behind]


def _pending_and_behind(store: StateStore, clock: Clock) -> tuple[dict[tuple[str, str], int], bool]:
    tasks = sorted({task for (task, _key), item in Ledger(store).progress().items() if item.status != "closed"})
    running = sorted(task for task, state in store.task_states().items() if state.status == "running")
    values: dict[tuple[str, str], int] = {}
    for task in dict.fromkeys([*tasks, *running]):
        for occurrence in task_report(store, task, clock=clock).occurrences:
            if occurrence.state != "closed":
                values[(task, occurrence.occurrence)] = occurrence.pending
    return values, bool(executor_behind(store, clock))


class StateProbe:
    """One connection to the state for the serving process (opened on first use, re-opened
    after a failure), shared by the scrape and the health check."""

    def __init__(self, opener: Callable[[], StateStore]) -> None:
        self._open = opener
        self._store: StateStore | None = None
        self._lock = threading.Lock()

    def read(self, what: Callable[[StateStore], Any]) -> Any:
        with self._lock:
            try:
                if self._store is None:
                    self._store = self._open()
                return what(self._store)
            except Exception:
                self.close_unlocked()
                raise

    def reachable(self) -> str | None:
        """None when the state answers a query on a new connection, else why not (a kept
        connection would still read a SQLite file that was removed)."""
        with self._lock:
            self.close_unlocked()
        try:
            self.read(lambda store: store.meta())
        except Exception as problem:  # noqa: BLE001 - reported as the health check's reason
            return f"the state cannot be read: {type(problem).__name__}: {problem}"
        return None

    def close_unlocked(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            try:
                store.close()
            except Exception:  # noqa: BLE001
                pass

    def close(self) -> None:
        with self._lock:
            self.close_unlocked()


class Health:
    """``/healthz``: the loop is alive (``alive()`` says None) and the state answers."""

    def __init__(self, state: StateProbe, alive: Callable[[], str | None]) -> None:
        self.state = state
        self.alive = alive

    def check(self) -> str | None:
        """None when healthy, else the reason."""
        return self.alive() or self.state.reachable()


def pids_alive(pids: Sequence[int]) -> str | None:
    """None while every worker process runs (a zombie -- exited, not reaped yet -- counts as gone)."""
    for pid in pids:
        try:
            os.kill(pid, 0)
            stat = Path(f"/proc/{pid}/stat")
            if stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return f"worker process {pid} has exited"
        except (OSError, IndexError):
            return f"worker process {pid} has exited"
    return None


# --- the HTTP server ---------------------------------------------------------------------------


class MetricsServer:
    """``/metrics`` and ``/healthz`` on ``host:port``, in a daemon thread of the serving process."""

    def __init__(self, host: str, port: int, health: Health, clock: Clock | None = None) -> None:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        registry.register(StateCollector(health.state, clock))
        self.registry = registry
        self.health = health
        handler = _handler(self)
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="metrics", daemon=True)

    @property
    def address(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.health.state.close()


def _handler(server: MetricsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, generate_latest(server.registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                problem = server.health.check()
                text = "ok\n" if problem is None else f"unhealthy: {problem}\n"
                self._answer(200 if problem is None else 503, text.encode(), "text/plain; charset=utf-8")
            else:
                self._answer(404, b"not found: try /metrics or /healthz\n", "text/plain; charset=utf-8")

        def _answer(self, code: int, body: bytes, kind: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
