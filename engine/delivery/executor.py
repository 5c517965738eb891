"""The executor: delivers the occurrences of running tasks, exactly once per user.

One *pass* (``Executor.run_pass``) is what ``campaigns run --once`` does and what the service
repeats every poll interval:

1. read the applied platform and the running tasks from the state;
2. for each running task, each occurrence whose first window has opened:
   - open now (a window contains the instant): fan out -- first take over the batches of dead
     executors (and batches released unsent), then claim fresh batches of members until
     everyone has a ledger row or the window closes (``deliver``);
   - over (its last window closed): the users not reached are recorded ``expired``, also for
     occurrences that passed while no executor ran; nothing is ever sent late (``expire``);
   - between two windows: nothing;
3. occurrences of tasks that are no longer running are closed the same way once they are over.

Exactly-once is the ledger's claim protocol (``engine.delivery.ledger``); this module decides
what each row says (suppressed, capped, which creative), renders, paces and sends.

The clock is injectable: ``--now`` starts a simulated clock at that instant that then advances
in real time, so a fan-out that starts a second before a window closes still stops at the close.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from engine.clock import Clock
from engine.config.models import Platform, Task
from engine.config.names import CHANNELS
from engine.delivery.audiences import audience_size, task_members
from engine.delivery.directory import directory_store
from engine.delivery.ids import creative_index, message_id
from engine.delivery.ledger import (
    LEFT_AUDIENCE,
    MISSING_VARIABLE,
    PROVIDER_REJECTED,
    PROVIDER_UNAVAILABLE,
    RETRY_BASE_S,
    RETRY_CAP_S,
    Claim,
    Counts,
    Ledger,
    NewRow,
    Outcome,
    Presence,
)
from engine.delivery.pacing import Pace, TokenBucket, batch_limit, burst_size
from engine.delivery.pause_watch import PauseWatch
from engine.delivery.providers import Message, Outbox, Provider, describe_provider, open_provider
from engine.delivery.render import CreativeText, RenderError, creative_text
from engine.delivery.stream import MemberStream
from engine.errors import CampaignsError
from engine.schedule.occurrences import due_occurrences, site_zone

if TYPE_CHECKING:
    from engine.schedule.occurrences import Occurrence
    from engine.state import StateStore, TaskState

UTC = dt.timezone.utc
STATUS_CHECK_S = 2.0
"""How often a long fan-out re-reads the task's status, so a pause or a new apply stops it."""
GATEWAY_CHUNK = 100
"""Messages per provider call for providers other than the outbox (a window check before each)."""
CONCURRENT_ROUNDS = 16
"""A concurrent provider gets ``concurrency x batch_size x CONCURRENT_ROUNDS`` messages a call:
its requests stay in flight together through the call (each call ends waiting for its slowest
request, and starts all of them at once). A window close, a stop or a pause is still seen
before each request: the provider checks ``stop`` and the executor reads the pauses every
``PAUSE_POLL_S`` while it waits."""
PAUSE_POLL_S = 0.1
EXPIRE_BATCH = 5000
PREFETCH_BATCHES = 3
"""Members read ahead before a claim, in batches: enough that when other executors took the
next batches meanwhile, the claim still finds its members buffered."""


# --- what a task delivers --------------------------------------------------------------------


@dataclass
class TaskRun:
    """A running task as the executor needs it, built from the state."""

    task_id: str
    body: dict[str, Any]  # the task body without "campaign" (what audiences and models expect)
    task: Task
    digest: str | None
    site: str
    timezone: str
    channel: str
    creatives: list[CreativeText]
    audience_bodies: dict[str, Any]
    cap: int | None
    rate: float | None
    by_id: dict[str, CreativeText] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_id = {creative.id: creative for creative in self.creatives}

    def creative_for(self, user_id: str) -> CreativeText:
        return self.creatives[creative_index(self.task_id, user_id, len(self.creatives))]


def task_run(
    task_id: str,
    stored_body: Mapping[str, Any],
    platform: Platform,
    creatives: Mapping[str, Any],
    audiences: Mapping[str, Any],
    digest: str | None = None,
    templates: Mapping[str, Any] | None = None,
) -> TaskRun:
    """The ``TaskRun`` of a stored task; CampaignsError when the state lacks what it needs."""
    body = {key: value for key, value in stored_body.items() if key != "campaign"}
    try:
        task = Task.model_validate(body)
    except ValidationError as problem:
        raise CampaignsError(f"task {task_id}: the stored task is not valid: {problem.errors()[0]['msg']}") from None
    site = platform.sites.get(task.site)
    if site is None:
        raise CampaignsError(f"task {task_id}: site {task.site!r} is not in the applied platform")
    texts = []
    for creative_id in task.creatives:
        creative = creatives.get(creative_id)
        if creative is None:
            raise CampaignsError(f"task {task_id}: creative {creative_id!r} is not in the state")
        template = (templates or {}).get(creative.get("template")) if isinstance(creative, Mapping) else None
        texts.append(creative_text(creative_id, creative, template, task.channel, platform))
    rate = site.limits.rate_per_second.get(task.channel)
    return TaskRun(
        task_id=task_id,
        body=body,
        task=task,
        digest=digest,
        site=task.site,
        timezone=site.timezone,
        channel=task.channel,
        creatives=texts,
        audience_bodies=dict(audiences),
        cap=site.limits.max_per_user_per_day,
        rate=float(rate) if rate else None,
    )


# --- reporting -------------------------------------------------------------------------------


class Reporter(Protocol):
    """Where the executor tells what it does (a progress bar, log lines, a test's list)."""

    def occurrence(self, task: str, occurrence: str, total: int | None) -> None: ...

    def batch(self, event: dict[str, Any]) -> None: ...

    def finished(self, task: str, occurrence: str) -> None: ...

    def error(self, message: str) -> None: ...

    # optional: ``event(event)`` gets the other log events (an occurrence's summary, provider
    # notices) as dicts with ``event``, ``level`` and ``message``


class Observer(Protocol):
    """Where the executor reports what it settled and how its provider calls went (metrics:
    ``engine.delivery.metrics.ExecutorMetrics``). Kept narrow so the send path stays readable."""

    def settled(self, task: str, channel: str, counts: Mapping[str, int], failed_by_reason: Mapping[str, int] | None = None) -> None: ...

    def provider_call(self, channel: str, seconds: float, deliveries: list[Any] | None) -> None: ...


class NoObserver:
    def settled(self, task: str, channel: str, counts: Mapping[str, int], failed_by_reason: Mapping[str, int] | None = None) -> None:
        pass

    def provider_call(self, channel: str, seconds: float, deliveries: list[Any] | None) -> None:
        pass


class SilentReporter:
    def occurrence(self, task: str, occurrence: str, total: int | None) -> None:
        pass

    def batch(self, event: dict[str, Any]) -> None:
        pass

    def finished(self, task: str, occurrence: str) -> None:
        pass

    def error(self, message: str) -> None:
        pass

    def event(self, event: dict[str, Any]) -> None:
        pass


@dataclass
class OccurrenceSummary:
    """What one pass did to one occurrence of one task."""

    task: str
    occurrence: str
    counts: Counts = field(default_factory=Counts)  # rows written/settled by this pass
    unsent: int = 0  # left pending for a later window or run (a stop, a closing window)
    retrying: int = 0  # the provider could not take them: retried from ``retry_at``
    retry_at: float | None = None
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    expired_only: bool = False  # the occurrence was over: nothing was sent, the unreached expired
    provider_down: bool = False  # a batch found the provider taking nothing: stop for this pass

    def parts(self) -> list[str]:
        c = self.counts
        parts = [] if self.expired_only and not c.sent else [f"{c.sent:,} sent"]
        if c.failed:
            reasons = ", ".join(f"{n:,} {r}" for r, n in sorted(self.failed_by_reason.items()))
            parts.append(f"{c.failed:,} failed" + (f" ({reasons})" if reasons else ""))
        for name in ("suppressed", "capped", "expired", "unconfirmed"):
            value = getattr(c, name)
            if value:
                parts.append(f"{value:,} {name}")
        if self.retrying:
            when = ""
            if self.retry_at is not None:
                when = " from " + dt.datetime.fromtimestamp(self.retry_at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
            parts.append(f"{self.retrying:,} waiting for the provider (retried{when})")
        if self.unsent:
            parts.append(f"{self.unsent:,} left for a later window or run")
        return parts or ["nothing left to record"]

    def line(self) -> str:
        """``task t1 occurrence 2026-12-01: 94 expired.``"""
        return f"task {self.task} occurrence {self.occurrence}: " + ", ".join(self.parts()) + "."

    def to_json(self) -> dict[str, Any]:
        values = self.counts.as_dict()
        del values["pending"]
        event: dict[str, Any] = {"task": self.task, "occurrence": self.occurrence, **values}
        if self.failed_by_reason:
            event["failed_by_reason"] = dict(sorted(self.failed_by_reason.items()))
        if self.retrying:
            event["retrying"] = self.retrying
            event["retry_at"] = _iso(self.retry_at)
        if self.unsent:
            event["unsent"] = self.unsent
        return event


@dataclass
class PassSummary:
    """What one pass did, in all and per occurrence."""

    occurrences: int = 0  # occurrences delivered or expired
    batches: int = 0
    counts: Counts = field(default_factory=Counts)  # rows written/settled by this pass
    unsent: int = 0
    errors: list[str] = field(default_factory=list)
    retrying: int = 0
    per_occurrence: list[OccurrenceSummary] = field(default_factory=list)

    def line(self) -> str:
        """One line per occurrence (naming task and occurrence), then the total when there are several."""
        if not self.per_occurrence:
            return "Nothing due."
        lines = [item.line() for item in self.per_occurrence]
        if len(lines) > 1:
            total = OccurrenceSummary("", "", self.counts, self.unsent, self.retrying)
            total.expired_only = all(item.expired_only for item in self.per_occurrence)
            for item in self.per_occurrence:
                for reason, count in item.failed_by_reason.items():
                    total.failed_by_reason[reason] = total.failed_by_reason.get(reason, 0) + count
            lines.append(f"{len(lines)} occurrences: " + ", ".join(total.parts()) + ".")
        return "\n".join(lines)


MembersFn = Callable[[TaskRun, bool], Iterable[list[Any]]]
"""``members(run, snapshot) -> batches of members`` (objects with user_id, attributes, opt_out),
de-duplicated and ordered by user_id."""


# --- the executor ----------------------------------------------------------------------------


class Executor:
    """Delivers due occurrences from one state. Use as a context manager (it registers itself
    and holds its proof of life while open)."""

    def __init__(
        self,
        store: StateStore,
        base_dir: Path | str,
        *,
        clock: Clock | None = None,
        batch_size: int | None = None,
        stop: threading.Event | None = None,
        reporter: Reporter | None = None,
        members: MembersFn | None = None,
        providers: Callable[[str, Platform], Provider] | None = None,
        tasks: Iterable[str] | None = None,
        member_batch: int = 5000,
        observer: Observer | None = None,
    ) -> None:
        self.store = store
        self.base_dir = Path(base_dir)
        self.clock = clock or Clock()
        self.batch_size = batch_size
        self.stop = stop or threading.Event()
        self.reporter: Reporter = reporter or SilentReporter()
        self.ledger = Ledger(store)
        self.presence = Presence(store, self.ledger.executor)
        self._members = members
        self._open_provider = providers or (lambda channel, platform: open_provider(channel, platform, self.base_dir))
        self.only = set(tasks) if tasks is not None else None
        self.member_batch = member_batch
        self.observer: Observer = observer or NoObserver()
        self._exit = ExitStack()
        self._providers: dict[str, Provider] = {}
        self._platform: Platform | None = None
        self._directory: StateStore | None = None
        self.pauses = PauseWatch(store)  # emergency pauses (`campaigns pause`), re-read every fraction of a second

    @property
    def executor_id(self) -> str:
        return self.ledger.executor

    def __enter__(self) -> Executor:
        self.presence.hold()
        self._exit.callback(self.presence.release)
        known = self.ledger.registered()
        self.ledger.forget_executors(set(known) - self.presence.alive(known))  # rows of executors that died
        self.ledger.register(time.time())
        self._exit.callback(self._unregister)
        return self

    def __exit__(self, *exc: object) -> None:
        self._close_providers()
        self._exit.close()
        self.ledger.close()

    def _unregister(self) -> None:
        try:
            self.ledger.unregister()
        except Exception:  # noqa: BLE001 - the state may be gone; the row is informational
            pass

    # -- one pass ---------------------------------------------------------------------------

    def run_pass(self) -> PassSummary:
        """Do everything due at the clock's current instant (see the module doc)."""
        summary = PassSummary()
        platform = self._load_platform()
        try:
            if platform is None:
                return summary
            states = self.store.task_states()
            held = self.pauses.refresh()
            tasks = self.store.resources(kind="task")
            creatives = {s.id: s.body for s in self.store.resources(kind="creative").values()}
            audiences = {s.id: s.body for s in self.store.resources(kind="audience").values()}
            templates = {s.id: s.body for s in self.store.resources(kind="template").values()}
            unclosed: dict[str, list[Any]] = {}
            for (task_id, _key), progress in self.ledger.progress().items():
                if progress.status != "closed":
                    unclosed.setdefault(task_id, []).append(progress)
            for task_id, state in sorted(states.items()):
                if self.stop.is_set():
                    break
                if self.only is not None and task_id not in self.only:
                    continue
                stored = tasks.get(f"task.{task_id}")
                running = state.status == "running" and task_id not in held  # held: paused outside git
                if not running and task_id not in unclosed:
                    continue
                if stored is None:
                    summary.errors.append(f"task {task_id}: {state.status} in the state but its definition is missing")
                    continue
                try:
                    run: TaskRun | None = task_run(
                        task_id, stored.body, platform, creatives, audiences, state.content_digest, templates
                    )
                except CampaignsError as problem:
                    if running:
                        summary.errors.append(str(problem))
                        self.reporter.error(str(problem))
                        continue
                    run = None  # e.g. a completed task whose creatives are gone: its occurrences still close
                try:
                    if running:
                        assert run is not None
                        self._task(run, state, unclosed.get(task_id, []), summary)
                    else:
                        self._close_stopped(task_id, run, unclosed[task_id], summary)
                except CampaignsError as problem:
                    if isinstance(problem, _ProviderBroken):
                        raise
                    summary.errors.append(f"task {task_id}: {problem}")
                    self.reporter.error(f"task {task_id}: {problem}")
            self.ledger.seen(time.time())
            return summary
        finally:
            self._close_providers()

    def _load_platform(self) -> Platform | None:
        stored = self.store.resource("platform")
        if stored is None:
            return None
        try:
            platform = Platform.model_validate(stored.body)
        except ValidationError as problem:
            raise CampaignsError(f"the applied platform is not valid: {problem.errors()[0]['msg']}") from None
        if self._platform is None or self._platform != platform:
            self._platform = platform
            if self._directory is not None and self._directory is not self.store:
                self._directory.close()
            self._directory = None
        if self.batch_size is None:
            self.batch_size = platform.executor.batch_size
        return platform

    def describe(self) -> dict[str, Any]:
        """What this executor works with, for its start-up log line: the state (no password),
        its id, the provider of each channel and the running tasks."""
        platform = self._load_platform()
        states = self.store.task_states()
        held = self.pauses.refresh()
        running = sorted(
            t for t, state in states.items()
            if state.status == "running" and t not in held and (self.only is None or t in self.only)
        )
        providers: dict[str, str] = {}
        if platform is not None:
            for channel in CHANNELS:
                try:
                    providers[channel] = describe_provider(channel, platform, self.base_dir)
                except CampaignsError as problem:
                    providers[channel] = f"misconfigured: {problem}"
        return {
            "state": self.store.display_url,
            "executor": self.executor_id,
            "providers": providers,
            "running_tasks": running,
        }

    def _members_of(self, run: TaskRun, snapshot: bool = True) -> MemberStream:
        if self._members is not None:
            return MemberStream(self._members(run, snapshot))
        batches = task_members(
            self._directory_store(),
            run.task_id,
            run.body,
            run.audience_bodies,
            snapshot=snapshot,
            batch_size=self.member_batch,
            attachments=self.store,
        )
        return MemberStream(batches)

    def _directory_store(self) -> StateStore:
        """The store holding the user directory (the state itself unless platform.yaml names another)."""
        if self._directory is None:
            assert self._platform is not None
            self._directory = directory_store(self._platform, self.store, self.base_dir)
            if self._directory is not self.store:
                self._exit.callback(self._directory.close)
        return self._directory

    def _provider(self, channel: str) -> Provider:
        provider = self._providers.get(channel)
        if provider is None:
            assert self._platform is not None
            provider = self._providers[channel] = self._open_provider(channel, self._platform)
            self._log_notices(provider)
        return provider

    def _close_providers(self) -> None:
        providers, self._providers = self._providers, {}
        for provider in providers.values():
            try:
                provider.close()
            except Exception:  # noqa: BLE001
                pass

    # -- one task ---------------------------------------------------------------------------

    def _task(self, run: TaskRun, state: TaskState, unclosed: list[Any], summary: PassSummary) -> None:
        """A running task: deliver its open occurrences, expire those that are over."""
        now = self.clock.now()
        # Occurrences that ended before the task was running were never due. (A simulated
        # clock earlier than that moment cannot say, so it looks at everything.)
        since: dt.datetime | None = state.since if state.since <= now else None
        if since is not None and unclosed:
            earliest = min(p.finish_at for p in unclosed)
            since = min(since, dt.datetime.fromtimestamp(earliest - 1, UTC))
        for occurrence in due_occurrences(run.task.schedule, run.timezone, now, since=since):
            if self.stop.is_set():
                return
            now = self.clock.now()
            if occurrence.finish <= now:
                self._expire(run, occurrence, summary)
            elif occurrence.is_open(now):
                self._deliver(run, occurrence, summary)

    def _close_stopped(self, task_id: str, run: TaskRun | None, unclosed: list[Any], summary: PassSummary) -> None:
        """A task no longer running (paused, completed, ...): nothing is sent, but each of its
        started occurrences is closed once its last window closed, the unreached expired. When
        its audiences cannot be read any more (deleted with the task), the occurrence is closed
        with the rows it has."""
        now = self.clock.epoch()
        for progress in unclosed:
            if self.stop.is_set():
                return
            if progress.finish_at > now:
                continue
            counts = self._expire_claims(task_id, progress.occurrence)
            note = None
            if progress.status == "open":
                if run is None:
                    note = "its definition can no longer be read"
                else:
                    try:
                        counts.add(self._expire_rest(run, progress.occurrence))
                    except CampaignsError as problem:
                        note = str(problem)
            self.ledger.close_if_done(task_id, progress.occurrence, self.clock.epoch(), force=note is not None)
            self._log_expiry(task_id, progress.occurrence, counts, note, channel=progress.channel)
            self._summed(summary, OccurrenceSummary(task_id, progress.occurrence, counts, expired_only=True))

    def _open(self, run: TaskRun, occurrence: Occurrence):
        return self.ledger.open_occurrence(
            run.task_id,
            occurrence.key,
            site=run.site,
            channel=run.channel,
            finish_at=occurrence.finish.timestamp(),
            now=self.clock.epoch(),
        )

    def _dead_holders(self, task_id: str, key: str) -> set[str | None]:
        """Holders of the occurrence's claims whose batches are nobody's business any more:
        released (None), dead executors, and this executor itself (one occurrence is handled
        at a time, so a claim of its own found here is one a failure left behind)."""
        holders = self.ledger.claim_holders(task_id, key)
        named = {h for h in holders if h is not None and h != self.executor_id}
        dead: set[str | None] = set(named - self.presence.alive(named))
        if None in holders:
            dead.add(None)
        if self.executor_id in holders:
            dead.add(self.executor_id)
        if dead - {None, self.executor_id}:
            self.ledger.forget_executors(h for h in dead if h is not None and h != self.executor_id)
        return dead

    def _still_running(self, run: TaskRun) -> bool:
        state = self.store.task_states().get(run.task_id)
        return (
            state is not None and state.status == "running" and state.content_digest == run.digest
            and not self.pauses.held(run.task_id)
        )

    # -- delivering -------------------------------------------------------------------------

    def _summed(self, summary: PassSummary, occurrence: OccurrenceSummary) -> None:
        """Count one occurrence's work into the pass and log its summary line."""
        summary.occurrences += 1
        summary.counts.add(occurrence.counts)
        summary.unsent += occurrence.unsent
        summary.retrying += occurrence.retrying
        summary.per_occurrence.append(occurrence)
        level = "warning" if occurrence.retrying or occurrence.counts.unconfirmed else "info"
        self._event(
            {"event": "occurrence", "level": level, "executor": self.executor_id, **occurrence.to_json(), "message": occurrence.line()}
        )

    def _event(self, event: dict[str, Any]) -> None:
        """A log event that is not a batch (summaries, notices): to reporters that take them."""
        log = getattr(self.reporter, "event", None)
        if log is not None:
            log(event)

    def _deliver(self, run: TaskRun, occurrence: Occurrence, summary: PassSummary) -> bool:
        progress = self._open(run, occurrence)
        if progress.status == "closed":
            return False
        key = occurrence.key
        window = occurrence.window_at(self.clock.now())
        assert window is not None
        window_end = window.finish.timestamp()
        self._provider(run.channel)  # a provider that cannot open fails before anything is claimed
        self.reporter.occurrence(run.task_id, key, self._total(run, progress))
        done = OccurrenceSummary(run.task_id, key)
        stream: MemberStream | None = None
        taken: list[Claim] = []
        checked = time.monotonic()
        worked = False
        try:
            dead = self._dead_holders(run.task_id, key)
            if dead:
                taken = self.ledger.take_over(run.task_id, key, dead, now=self.clock.epoch())
            while taken:
                claim = taken.pop(0)
                if self.stop.is_set() or self.clock.epoch() >= window_end or done.provider_down or self.pauses.held(run.task_id):
                    self.ledger.release(claim)  # (after an unavailable provider: the rest waits for the next pass)
                    continue
                stream = stream or self._members_of(run)
                members = stream.take_range(claim.first_user, claim.last_user)
                worked = True
                self._send_claim(run, key, claim, {m.user_id: m for m in members}, window_end, summary, done)
            if progress.status == "open":
                limit = batch_limit(run.rate, self.batch_size or 1000)
                zone = _zone(run.timezone)
                while not self.stop.is_set() and self.clock.epoch() < window_end and not done.provider_down:
                    if self.pauses.held(run.task_id):  # paused outside git: stop before the next batch
                        break
                    if time.monotonic() - checked > STATUS_CHECK_S:
                        checked = time.monotonic()
                        if not self._still_running(run):
                            break
                    stream = stream or self._members_of(run)
                    stream.prefetch(PREFETCH_BATCHES * limit)  # outside the claim's transaction
                    # the daily cap counts on the site's calendar day of the send
                    cap_key = f"{run.site}/{self.clock.now().astimezone(zone).date().isoformat()}"
                    result = self.ledger.claim(
                        run.task_id,
                        key,
                        limit=limit,
                        take=stream.take,
                        build=self._builder(run, key, cap_key),
                        now=self.clock.epoch(),
                        cap_key=cap_key,
                        cap_limit=run.cap,
                        pace=(run.site, run.channel, run.rate) if run.rate else None,
                    )
                    if result is None:
                        break
                    worked = True
                    counts = Counts()
                    for row in result.rows:
                        if row.status != "pending":
                            setattr(counts, row.status, getattr(counts, row.status) + 1)
                    done.counts.add(counts)
                    if result.claim is not None:
                        members = {m.user_id: m for m in result.members}
                        self._send_claim(run, key, result.claim, members, window_end, summary, done, counts)
                    elif result.rows:
                        self._log_batch(run.task_id, key, counts, 0, 0.0, recovered=False, channel=run.channel)
                    if result.exhausted:
                        break
        finally:
            for claim in taken:
                self.ledger.release(claim)
            if stream is not None:
                stream.close()
            self.reporter.finished(run.task_id, key)
        # rows put off because the provider could not take them (by this pass or an earlier one)
        done.retrying, done.retry_at = self.ledger.waiting(run.task_id, key, self.clock.epoch())
        if worked or done.retrying:
            self._summed(summary, done)
        return worked

    def _total(self, run: TaskRun, progress: Any) -> int | None:
        """The audience's size, for a progress bar (only when the reporter shows one)."""
        if not getattr(self.reporter, "wants_total", False):
            return None
        try:
            size = audience_size(self._directory_store(), run.body, run.audience_bodies, task_id=run.task_id, attachments=self.store)
        except CampaignsError:
            return None
        return size

    def _builder(self, run: TaskRun, key: str, cap_key: str) -> Callable[[list[Any], dict[str, int] | None], list[NewRow]]:
        task_id, channel, cap = run.task_id, run.channel, run.cap
        creatives = [c.id for c in run.creatives]
        count = len(creatives)

        def build(members: list[Any], sent_today: dict[str, int] | None) -> list[NewRow]:
            rows = []
            append = rows.append
            for member in members:
                user_id = member.user_id
                mid = message_id(task_id, key, user_id)
                if channel in member.opt_out:
                    append(NewRow(user_id, mid, "suppressed", error=f"opted out of {channel}"))
                    continue
                if sent_today is not None and cap is not None:
                    already = sent_today.get(user_id, 0)
                    if already >= cap:
                        append(NewRow(user_id, mid, "capped", error=f"already {already} message(s) on {cap_key} (cap {cap})"))
                        continue
                creative = creatives[creative_index(task_id, user_id, count)] if count > 1 else creatives[0]
                append(NewRow(user_id, mid, "pending", creative, cap_key))
            return rows

        return build

    def _send_claim(
        self,
        run: TaskRun,
        key: str,
        claim: Claim,
        members: Mapping[str, Any],
        window_end: float,
        summary: PassSummary,
        done: OccurrenceSummary,
        decided: Counts | None = None,
    ) -> None:
        """Render, pace and send the claim's pending rows, then record the outcome. On any
        failure before the outcome is recorded the claim is given back (released)."""
        try:
            self._send_claim_inner(run, key, claim, members, window_end, summary, done, decided)
        except BaseException:
            try:
                self.ledger.release(claim)
            except Exception:  # noqa: BLE001 - the state is unreachable: a later pass takes it over
                pass
            raise

    def _send_claim_inner(
        self,
        run: TaskRun,
        key: str,
        claim: Claim,
        members: Mapping[str, Any],
        window_end: float,
        summary: PassSummary,
        done: OccurrenceSummary,
        decided: Counts | None,
    ) -> None:
        started = time.monotonic()
        rows = claim.rows
        special: list[Outcome] = []  # failed, retry, or sent after more than one attempt
        messages: list[Message] = []
        positions: list[int] = []
        task_id, channel = run.task_id, run.channel
        by_id, pick = run.by_id, run.creative_for
        stop = self.stop
        progress = [0, len(rows)]  # [next row to render, rows rendered when a stop cut it short]

        def render(upto: int) -> None:
            """Render rows until ``upto`` messages are in hand (or the rows run out); a stop
            (SIGTERM) while rendering leaves the rest pending, for a later run."""
            index = progress[0]
            total = progress[1]
            while index < total and len(messages) < upto:
                row = rows[index]
                if not index & 31 and stop.is_set():
                    progress[1] = index
                    break
                index += 1
                member = members.get(row.user_id)
                if member is None:
                    special.append(
                        Outcome(
                            row.user_id,
                            "failed",
                            0,
                            "no longer a member of the task's audiences when it was to be sent again",
                            LEFT_AUDIENCE,
                        )
                    )
                    continue
                creative = by_id.get(row.creative) if row.creative else None
                if creative is None:
                    creative = pick(row.user_id)
                try:
                    title, content, redirection = creative.render(member.attributes)
                except RenderError as problem:
                    detail = str(problem) or getattr(problem, "detail", None)  # the whole sentence: creative, field, what
                    special.append(Outcome(row.user_id, "failed", 0, detail, getattr(problem, "reason", MISSING_VARIABLE)))
                    continue
                messages.append(Message(row.message_id, task_id, key, row.user_id, channel, creative.id, title, content, redirection))
                positions.append(index - 1)
            progress[0] = index

        provider = self._provider(channel)
        # A provider with ``concurrency`` (the gateway) keeps that many requests in flight within
        # one call and paces each request itself; the executor hands it a few rounds at a time.
        concurrency = getattr(provider, "concurrency", None)
        chunk = len(rows) if isinstance(provider, Outbox) else GATEWAY_CHUNK
        bucket = pace = None
        stop_sending: Callable[[], bool] | None = None
        paused = threading.Event()  # the task was paused (`campaigns pause`) during a provider call
        if concurrency:
            per_request = int(getattr(provider, "batch_size", 20))
            chunk = max(GATEWAY_CHUNK, concurrency * per_request * CONCURRENT_ROUNDS)
            if run.rate:
                factor = float(getattr(provider, "pace_factor", 1.0))
                pace = Pace(run.rate * factor, start=claim.pace_start, burst=per_request)

            def stop_sending() -> bool:
                # Called on the provider's own thread before each request: no state access here
                # (this thread reads the pauses while it waits for the call, see ``_wait_for``).
                return stop.is_set() or paused.is_set() or self.clock.epoch() >= window_end

        elif run.rate:
            chunk = min(chunk, burst_size(run.rate))
            bucket = TokenBucket(run.rate, chunk, start=claim.pace_start, wait=self.stop.wait)
        # A concurrent provider gets its part while the next part is rendered (``submit``), so the
        # gateway is not idle while this thread renders; the others get every message rendered first.
        chunk = max(chunk, 1)
        submit = getattr(provider, "submit", None) if concurrency else None
        render(chunk if submit is not None else len(rows))
        cut: int | None = None
        broken: CampaignsError | None = None
        tripped = False
        start = 0
        while start < len(messages):
            part = messages[start : start + chunk]
            if bucket is not None and not bucket.take(len(part)):
                cut = positions[start]
                break
            if self.clock.epoch() >= window_end or self.pauses.held(task_id):  # the rest stays pending
                cut = positions[start]
                break
            called = time.monotonic()
            try:
                if submit is not None:
                    sending = submit(part, pace=pace, stop=stop_sending)
                    try:
                        render(start + 2 * chunk)  # the next part, while this one is in flight
                    finally:
                        deliveries = self._wait_for(sending, task_id, paused)
                elif concurrency:
                    deliveries = provider.send(part, pace=pace, stop=stop_sending)
                else:
                    deliveries = provider.send(part)
            except CampaignsError as problem:
                self.observer.provider_call(channel, time.monotonic() - called, None)
                broken = problem
                cut = positions[start]
                break
            self.observer.provider_call(channel, time.monotonic() - called, deliveries)
            unavailable_here = 0
            for offset, delivery in enumerate(deliveries):
                if delivery.status == "sent" and delivery.attempts == 1:  # the usual case: nothing to note
                    continue
                row = rows[positions[start + offset]]
                if delivery.status == "sent":
                    special.append(Outcome(row.user_id, "sent", delivery.attempts))
                elif getattr(delivery, "reason", None) == PROVIDER_UNAVAILABLE:
                    special.append(Outcome(row.user_id, "retry", delivery.attempts, delivery.error, PROVIDER_UNAVAILABLE))
                    if delivery.attempts or stop_sending is None or not stop_sending():  # (not: left unposted by a stop)
                        unavailable_here += 1
                else:
                    reason = getattr(delivery, "reason", None) or PROVIDER_REJECTED
                    code = getattr(delivery, "code", None)
                    error = delivery.error
                    if code and reason == PROVIDER_REJECTED:
                        error = f"{code}: {error}" if error else code
                    special.append(Outcome(row.user_id, "failed", delivery.attempts, error, reason))
            self._log_notices(provider)
            if unavailable_here and not any(delivery.status == "sent" for delivery in deliveries):
                # The provider takes nothing: the rest of the claim waits with the rows it could not take.
                tripped = True
                following = start + len(part)
                render(following + 1)
                cut = positions[following] if following < len(messages) else progress[1]
                break
            start += len(part)
        if cut is None:
            cut = progress[1]
        if cut < len(rows):  # rows from the cut on stay pending (render failures there too: retried later)
            special = [o for o in special if o.user_id < rows[cut].user_id]
        retry_at = held_back = None
        again = [o for o in special if o.status == "retry"]
        if again:
            last_error = again[-1].error or "no answer"
            retry_at = self.clock.epoch() + min(RETRY_CAP_S, RETRY_BASE_S * 2**claim.retries)
            if tripped and cut < len(rows):
                held_back = f"held back: the {channel} provider took nothing of the batch before ({last_error})"
        finished = self.ledger.finish(claim, cut, special, self.clock.epoch(), retry_at=retry_at, held_back=held_back)
        summary.batches += 1
        counts = Counts(sent=finished.sent, failed=finished.failed)
        done.counts.add(counts)
        for reason, count in finished.failed_by_reason.items():
            done.failed_by_reason[reason] = done.failed_by_reason.get(reason, 0) + count
        if tripped:
            done.provider_down = True
        if not finished.retrying:  # (else the unsent tail waits for the retry with the rest)
            done.unsent += finished.unsent
        if decided is not None:
            counts.suppressed, counts.capped = decided.suppressed, decided.capped
        self._log_batch(
            task_id,
            key,
            counts,
            finished.unsent,
            time.monotonic() - started,
            recovered=claim.recovered,
            failed_by_reason=finished.failed_by_reason,
            retrying=finished.retrying,
            retry_at=retry_at if finished.retrying else None,
            channel=channel,
        )
        if broken is not None:
            raise _ProviderBroken(f"the {channel} provider failed: {broken}")

    def _wait_for(self, sending: concurrent.futures.Future, task_id: str, paused: threading.Event) -> list[Any]:
        """The deliveries of a submitted provider call; meanwhile a pause of the task is seen
        within ``PAUSE_POLL_S`` and stops the requests not posted yet (they stay pending)."""
        while True:
            try:
                return sending.result(timeout=PAUSE_POLL_S)
            except concurrent.futures.TimeoutError:
                if not paused.is_set() and self.pauses.held(task_id):
                    paused.set()

    def _log_notices(self, provider: Provider) -> None:
        notices = getattr(provider, "notices", None)
        while notices:
            self._event(
                {"event": "provider", "level": "warning", "executor": self.executor_id, "channel": provider.channel, "message": notices.pop(0)}
            )

    def _log_batch(
        self,
        task_id: str,
        key: str,
        counts: Counts,
        unsent: int,
        elapsed: float,
        *,
        recovered: bool,
        failed_by_reason: Mapping[str, int] | None = None,
        retrying: int = 0,
        retry_at: float | None = None,
        channel: str | None = None,
    ) -> None:
        if channel is not None:
            self.observer.settled(task_id, channel, counts.as_dict(), failed_by_reason)
        event: dict[str, Any] = {
            "event": "batch",
            "level": "info",
            "executor": self.executor_id,
            "task": task_id,
            "occurrence": key,
            **counts.as_dict(),
        }
        del event["pending"], event["expired"], event["unconfirmed"]
        if failed_by_reason:
            event["failed_by_reason"] = dict(sorted(failed_by_reason.items()))
        if retrying:
            event["level"] = "warning"
            event["retrying"] = retrying
            event["retry_at"] = _iso(retry_at)
        event["unsent"] = unsent
        event["elapsed_s"] = round(elapsed, 4)
        if recovered:
            event["recovered"] = True
        self.reporter.batch(event)

    # -- expiring ---------------------------------------------------------------------------

    def _expire(self, run: TaskRun, occurrence: Occurrence, summary: PassSummary) -> bool:
        """The occurrence is over: whoever it did not reach is ``expired`` (``unconfirmed``
        when a crashed executor may have handed it to the provider)."""
        key = occurrence.key
        progress = self._open(run, occurrence)
        if progress.status == "closed":
            return False
        counts = self._expire_claims(run.task_id, key)
        if progress.status == "open":
            counts.add(self._expire_rest(run, key))
        self.ledger.close_if_done(run.task_id, key, self.clock.epoch())
        self._log_expiry(run.task_id, key, counts, channel=run.channel)
        self._summed(summary, OccurrenceSummary(run.task_id, key, counts, expired_only=True))
        return True

    def _expire_claims(self, task_id: str, key: str) -> Counts:
        """Pending rows of released batches become expired, those of dead executors' batches unconfirmed."""
        dead = self._dead_holders(task_id, key)
        return self.ledger.expire_claims(task_id, key, dead, self.clock.epoch()) if dead else Counts()

    def _expire_rest(self, run: TaskRun, key: str) -> Counts:
        """Members without a ledger row get one: ``expired`` (``suppressed`` if opted out)."""
        counts = Counts()
        stream = self._members_of(run)
        try:
            build = self._expiry_builder(run, key)
            while True:
                result = self.ledger.claim(run.task_id, key, limit=EXPIRE_BATCH, take=stream.take, build=build, now=self.clock.epoch())
                if result is None:
                    break
                for row in result.rows:
                    setattr(counts, row.status, getattr(counts, row.status) + 1)
                if result.exhausted:
                    break
        finally:
            stream.close()
        return counts

    def _log_expiry(self, task_id: str, key: str, counts: Counts, note: str | None = None, *, channel: str | None = None) -> None:
        if channel is not None:
            self.observer.settled(task_id, channel, counts.as_dict())
        event: dict[str, Any] = {
            "event": "expired", "level": "info", "executor": self.executor_id, "task": task_id, "occurrence": key, **counts.as_dict()
        }
        del event["pending"], event["sent"], event["failed"]
        if counts.unconfirmed:
            event["level"] = "warning"
        if note:
            event["level"] = "warning"
            event["note"] = f"closed without recording every unreached user: {note}"
        self.reporter.batch(event)

    def _expiry_builder(self, run: TaskRun, key: str) -> Callable[[list[Any], dict[str, int] | None], list[NewRow]]:
        task_id, channel = run.task_id, run.channel
        reason = "not reached before the occurrence's last window closed"

        def build(members: list[Any], _sent_today: dict[str, int] | None) -> list[NewRow]:
            rows = []
            for member in members:
                mid = message_id(task_id, key, member.user_id)
                if channel in member.opt_out:
                    rows.append(NewRow(member.user_id, mid, "suppressed", error=f"opted out of {channel}"))
                else:
                    rows.append(NewRow(member.user_id, mid, "expired", error=reason))
            return rows

        return build


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _ProviderBroken(CampaignsError):
    """A provider as a whole stopped working (e.g. the outbox cannot be written): stop the pass."""


def _zone(name: str):
    return site_zone(name)
