"""What the planner asks of the state, answered in this process or by a forked worker.

The planner needs, from the state: a snapshot (lineage, serial, resource digests, task statuses,
passing pilot tests), the field differences of the resources that change (against their stored
bodies), and audience sizes of the tasks that change (from the user directory).

``LocalSource`` answers from an open ``StateStore``. ``ForkedSource`` answers from a child
process forked before the repository is loaded: opening the database (SQLAlchemy's import alone
is a sixth of a plan), reading the snapshot, and importing deepdiff and the user-directory code
then happen on another core while this process validates the repository. ``campaigns plan``
uses it when it has to load the repository (see ``engine.plan.fastpath``) and ``os.fork``
exists, unless ``CAMPAIGNS_NO_FORK`` is set; everything else uses ``LocalSource``.

The forked reader's protocol
----------------------------
Two pipes: requests (parent to child) and answers (child to parent). A message is its length
(8 bytes, big-endian) followed by a pickle. Requests are ``(kind, argument)`` with kind
``details`` (``(bodies, SizeRequest | None)``, answered ``(diffs, sizes)``), ``diffs``,
``sizes`` or ``gaps`` (a SizeRequest, answered with the missing attributes per task); answers are ``("ok", value)`` or ``("error", message, is_user_error)``.

1. Turn-taking: at most one message is in flight, whatever its size. The child's first message
   is the snapshot; after that it writes exactly one answer per request, in order. The parent
   writes a request only after it has read every answer due (the snapshot, and the answer to its
   previous request, which it reads ahead and keeps if it was not asked for yet). So whoever
   writes, the other side is reading that pipe or will read it before it writes anything: neither
   process can block writing to a pipe the other is not reading (the hang of issue 9 was two
   requests written back to back while the first answer filled its pipe).
2. The child reads a whole request before it works on it or writes anything.
3. Overlap: a request's write returns once the child has drained it; the child works while the
   parent goes on (``submit_details`` returns at once, and the planner renders schedule previews
   before it calls the result). Questions wanted together go as one ``details`` request, so the
   overlap never needs a second request in flight.
4. Ending: EOF on the request pipe tells the child to stop (it closes the store and exits).
   ``close()`` closes both pipe ends and reaps the child, killing it at once when it still owes
   an answer nobody will read (it only reads, so nothing is lost), and after a few seconds when it
   does not exit. Processes forked later from the parent (validation workers) close its pipe ends
   at fork, so the child sees EOF as soon as the parent is gone.
5. Failures are one line, never a hang or a traceback: an exception in the child is an
   ``error`` answer, raised in the parent as ``CampaignsError`` (a user error: a bad state URL, a
   database that is not a state) or as ``RuntimeError`` naming the exception (a bug; the CLI
   prints it in one line). A child that dies, before or in the middle of an answer (EOF, a broken
   pipe), is ``CampaignsError("the state reader process ended unexpectedly (killed by SIGKILL)")``.
   After any failure the source is closed and every further question raises the same error.
"""
from __future__ import annotations

import os
import pickle
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from engine.config.models import Platform
from engine.config.settings import read_platform
from engine.config.usercsv import CsvFile
from engine.delivery import attribute_gaps
from engine.delivery.directory import known_attributes, open_directory
from engine.errors import CampaignsError
from engine.plan.diff import field_diffs
from engine.plan.impact_query import ImpactAnswer, ImpactRequest, impact_from_directory
from engine.plan.model import FieldDiff

if TYPE_CHECKING:
    from engine.state import StateStore, TaskState

AUDIENCE_SIZE_LIMIT = 200  # tasks per plan whose audience is counted (each count is a query)
GAP_MEMBERS_PER_PLAN = 200_000  # members read in all to find missing attributes (engine.delivery.attribute_gaps)


class SnapshotTask(NamedTuple):
    """What the planner needs of a recorded task status (cheaper to ship than a TaskState)."""

    task_id: str
    status: str
    content_digest: str | None


@dataclass
class StateSnapshot:
    """What the planner reads from the state, read once."""

    lineage: str
    serial: int
    digests: dict[str, str]
    task_states: dict[str, TaskState | SnapshotTask]
    passing: dict[str, set[str]]
    display: str
    attributes: tuple[str, ...] | None = None  # the user directory's attribute names; None: no directory
    drift: list[dict[str, Any]] = field(default_factory=list)  # engine.plan.drift: emergency pauses, failed applies

    @classmethod
    def read(cls, store: StateStore) -> StateSnapshot:
        meta = store.meta()
        return cls(
            lineage=meta.lineage,
            serial=meta.serial,
            digests=store.resource_digests(),
            task_states=store.task_states(),
            passing=store.passing_pilot_digests(),
            display=store.display_url,
            attributes=_directory_attributes(store),
            drift=_drift(store),
        )

    def to_wire(self) -> tuple:
        """Plain tuples: much cheaper to pickle than 10,000 dataclasses."""
        states = [(s.task_id, s.status, s.content_digest) for s in self.task_states.values()]
        return (self.lineage, self.serial, self.digests, states, self.passing, self.display, self.attributes, self.drift)

    @classmethod
    def from_wire(cls, wire: tuple) -> StateSnapshot:
        lineage, serial, digests, states, passing, display, attributes, drift = wire
        return cls(lineage, serial, digests, {row[0]: SnapshotTask(*row) for row in states}, passing, display, attributes, drift)


def _drift(store: StateStore) -> list[dict[str, Any]]:
    from engine.plan.drift import read_drift  # SQLAlchemy (0.3 s): only the process that reads the state

    return read_drift(store)


def _directory_attributes(store: StateStore) -> tuple[str, ...] | None:
    """What the ``unknown-attribute`` rule checks against, for the no-op fast path to compare."""
    known = known_attributes(store)
    return tuple(sorted(known)) if known is not None else None


@dataclass
class SizeRequest:
    """Audience sizes wanted for some tasks: their bodies, every audience body, CSV contents."""

    platform: dict[str, Any]
    base_dir: str
    tasks: dict[str, dict[str, Any]]
    audiences: dict[str, dict[str, Any]]
    attachments: dict[str, bytes | CsvFile]  # digest -> content, or the file to stream it from
    required: dict[str, list[str]] = field(default_factory=dict)  # task -> attributes its creatives need
    impact: ImpactRequest | None = None  # before sizes, changed audiences, the cap forecast (engine.plan.impact)


Details = tuple[dict[str, list["FieldDiff"]], "dict[str, int | None] | ImpactAnswer"]
"""Field differences, and sizes: a dict of task -> size, or, when the request asked for the
impact (``SizeRequest.impact``), an ``ImpactAnswer`` that carries those sizes and the rest."""


class StateSource(Protocol):
    def snapshot(self) -> StateSnapshot: ...

    def submit_details(self, bodies: dict[str, dict[str, Any]], sizes: SizeRequest | None) -> Callable[[], Details]:
        """Ask for field differences and audience sizes; the answer comes when the result is called."""
        ...

    def field_diffs(self, bodies: dict[str, dict[str, Any]]) -> dict[str, list[FieldDiff]]: ...

    def audience_sizes(self, request: SizeRequest) -> dict[str, int | None]: ...

    def attribute_gaps(self, request: SizeRequest) -> dict[str, list[list[Any]]]:
        """task -> ``AttributeGap.to_wire()`` of the ``request.required`` attributes its members lack."""
        ...

    def close(self) -> None: ...


# -- the work itself (runs in whichever process holds the store) ---------------------------------


def diffs_against_state(store: StateStore, bodies: dict[str, dict[str, Any]]) -> dict[str, list[FieldDiff]]:
    stored = store.resources(list(bodies))
    return {address: field_diffs(stored[address].body, body) for address, body in bodies.items() if address in stored}


def sizes_from_directory(store: StateStore, request: SizeRequest) -> dict[str, int | None] | ImpactAnswer:
    """Audience sizes from the user directory; the whole ``ImpactAnswer`` when the request asks
    for the impact."""
    if request.impact is not None:
        return impact_from_directory(store, request)
    from engine.delivery.audiences import audience_size  # 13 ms, only where the state is read

    sizes: dict[str, int | None] = {}
    platform = Platform.model_validate(request.platform)
    with open_directory(platform, store, request.base_dir) as directory:
        for task_id, body in list(request.tasks.items())[:AUDIENCE_SIZE_LIMIT]:
            try:
                sizes[task_id] = audience_size(
                    directory, body, request.audiences, task_id=task_id, attachments=request.attachments
                )
            except CampaignsError:
                sizes[task_id] = None
    return sizes


def gaps_from_directory(store: StateStore, request: SizeRequest) -> dict[str, list[list[Any]]]:
    """Missing attributes per task (``engine.delivery.attribute_gaps``), sampling more thinly
    when many tasks are asked about, so a plan reads at most about GAP_MEMBERS_PER_PLAN members."""

    wanted = {task_id: names for task_id, names in request.required.items() if names and task_id in request.tasks}
    if not wanted:
        return {}
    sample = max(1000, min(attribute_gaps.SAMPLE_MEMBERS, GAP_MEMBERS_PER_PLAN // len(wanted)))
    gaps: dict[str, list[list[Any]]] = {}
    platform = Platform.model_validate(request.platform)
    with open_directory(platform, store, request.base_dir) as directory:
        for task_id, names in list(wanted.items())[:AUDIENCE_SIZE_LIMIT]:
            try:
                found = attribute_gaps.attribute_gaps(
                    directory, task_id, request.tasks[task_id], request.audiences, names,
                    attachments=request.attachments, sample=sample,
                )
            except CampaignsError:
                continue  # the audience cannot be evaluated: its size says so already
            if found:
                gaps[task_id] = [gap.to_wire() for gap in found]
    return gaps


class LocalSource:
    """Answers from a store this process has open."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def snapshot(self) -> StateSnapshot:
        return StateSnapshot.read(self.store)

    def field_diffs(self, bodies: dict[str, dict[str, Any]]) -> dict[str, list[FieldDiff]]:
        return diffs_against_state(self.store, bodies) if bodies else {}

    def audience_sizes(self, request: SizeRequest) -> dict[str, int | None]:
        return sizes_from_directory(self.store, request) if request.tasks else {}

    def attribute_gaps(self, request: SizeRequest) -> dict[str, list[list[Any]]]:
        return gaps_from_directory(self.store, request) if request.required else {}

    def submit_details(self, bodies: dict[str, dict[str, Any]], sizes: SizeRequest | None) -> Callable[[], Details]:
        def answer() -> Details:
            if sizes is not None and sizes.impact is not None:
                return self.field_diffs(bodies), sizes_from_directory(self.store, sizes)
            return self.field_diffs(bodies), self.audience_sizes(sizes) if sizes is not None else {}

        return answer

    def close(self) -> None:
        pass


# -- the forked worker ----------------------------------------------------------------------------

_HEADER = struct.Struct("!Q")
_READ_CHUNK = 1 << 20
_REAP_SECONDS = 5.0  # a child told to stop that has not exited by then is killed

# Pipe ends held by this process for its state readers. A process forked from this one later (the
# validation workers) closes them at once, so a reader sees EOF as soon as its planner is gone.
_INHERITED: set[int] = set()


def _close_inherited() -> None:
    for fd in list(_INHERITED):
        try:
            os.close(fd)
        except OSError:
            pass
    _INHERITED.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited)


def _send(fd: int, value: Any) -> None:
    """One message: its length (8 bytes, big-endian), then its pickle. Blocks until all is written."""
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _send_quietly(fd: int, value: Any) -> None:
    try:
        _send(fd, value)
    except OSError:  # the parent went away; the request loop sees EOF
        pass


def _receive(fd: int) -> Any:
    """One whole message; EOFError when the writer closed its end before or in the middle of it."""
    header = _read_exactly(fd, _HEADER.size)
    if header is None:
        raise EOFError
    (size,) = _HEADER.unpack(header)
    data = _read_exactly(fd, size)
    if data is None:
        raise EOFError
    return pickle.loads(data)


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = os.read(fd, min(size, _READ_CHUNK))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _failure(problem: BaseException) -> tuple[str, str, bool]:
    if isinstance(problem, CampaignsError):
        return ("error", str(problem) or type(problem).__name__, True)
    message = " ".join(str(problem).split())  # one line, whatever the exception printed
    return ("error", f"{type(problem).__name__}: {message}" if message else type(problem).__name__, False)


def _warm_up(base_dir: str) -> None:
    """Import what the answers need while the parent is still loading the repository."""
    for module in ("deepdiff", "engine.delivery.audiences", "engine.state.directory_tables"):
        __import__(module)
    try:  # the first validation of a model builds its validators
        Platform.model_validate(read_platform(Path(base_dir)) or {})
    except Exception:  # noqa: BLE001 - only a warm-up; the real request reports real problems
        pass


def _work(store: StateStore, kind: str, argument: Any) -> Any:
    """The answer to one request (see the module docstring for the kinds)."""
    if kind == "details":
        bodies, sizes = argument
        diffs = diffs_against_state(store, bodies) if bodies else {}
        wanted = sizes is not None and (sizes.tasks or sizes.impact is not None)
        return diffs, (sizes_from_directory(store, sizes) if wanted else {})
    if kind == "diffs":
        return diffs_against_state(store, argument)
    if kind == "sizes":
        return sizes_from_directory(store, argument)
    if kind == "gaps":
        return gaps_from_directory(store, argument)
    raise ValueError(f"unknown request {kind!r}")


def _serve(url: str, base_dir: str, create: bool, requests: int, replies: int) -> None:
    """The child: open the state, send the snapshot, then answer each request until EOF."""
    try:
        from engine.state import StateStore  # SQLAlchemy: imported here, in the child, on its own core

        store = StateStore.open(url, base_dir, create=create, missing_ok=not create)
    except BaseException as problem:  # noqa: BLE001 - everything goes back to the parent
        _send(replies, _failure(problem))
        return
    try:
        try:
            wire = StateSnapshot.read(store).to_wire()
        except BaseException as problem:  # noqa: BLE001
            _send(replies, _failure(problem))
            return
        # The snapshot waits in the pipe until the parent has loaded the repository; meanwhile
        # (the write blocks without the GIL) import what the answers will need. No request can
        # arrive before the parent has read the snapshot (rule 1), so none is missed meanwhile.
        sender = threading.Thread(target=_send_quietly, args=(replies, ("ok", wire)), daemon=True)
        sender.start()
        _warm_up(base_dir)
        sender.join()
        while True:
            try:
                kind, argument = _receive(requests)  # the whole request, before any work (rule 2)
            except EOFError:
                return
            try:
                answer: tuple = ("ok", _work(store, kind, argument))
            except BaseException as problem:  # noqa: BLE001 - the parent reports it in one line
                answer = _failure(problem)
            _send(replies, answer)  # a parent that went away: BrokenPipeError ends the child
    finally:
        store.close()


def _describe_end(status: int | None) -> str:
    if status is None:
        return ""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f" (killed by {name})"
    return f" (exit status {code})"


class ForkedSource:
    """Answers from a child process that opened the state while this one did other work.

    Keeps the protocol's turn-taking (module docstring): at most one message in flight.
    """

    def __init__(self, pid: int, requests: int, replies: int) -> None:
        self.pid = pid
        self._requests = requests
        self._replies = replies
        self._snapshot: StateSnapshot | None = None
        self._sent = 0  # requests written so far; a request's number is its ticket
        self._owed: int | None = None  # the ticket whose answer the child may still be writing
        self._early: dict[int, Any] = {}  # answers read ahead of their ticket being redeemed
        self._failure: CampaignsError | RuntimeError | None = None
        self._closed = False
        self.exit_status: int | None = None  # the child's wait status, once reaped

    @classmethod
    def start(cls, url: str, base_dir: Path | str, *, create: bool = True) -> ForkedSource:
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the caller's code
            code = 0
            try:
                os.close(request_write)
                os.close(reply_read)
                _serve(url, str(base_dir), create, request_read, reply_write)
            except BaseException:  # noqa: BLE001 - a dying child must not run the parent's code
                code = 1
            finally:
                os._exit(code)
        os.close(request_read)
        os.close(reply_write)
        _INHERITED.update((request_write, reply_read))
        return cls(pid, request_write, reply_read)

    # -- the wire, with every way it can break turned into one clear error -------------------------

    def _fail(self, problem: CampaignsError | RuntimeError) -> CampaignsError | RuntimeError:
        self._failure = problem
        self.close()
        return problem

    def _ended(self) -> CampaignsError:
        """The child is gone (EOF, broken pipe): say so, with how it ended."""
        status = self._close(kill=False)
        self._failure = CampaignsError(f"the state reader process ended unexpectedly{_describe_end(status)}")
        return self._failure

    def _check_open(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._closed:
            raise CampaignsError("the state reader is closed")

    def _read_answer(self) -> Any:
        try:
            status, *rest = _receive(self._replies)
        except (EOFError, OSError):
            raise self._ended() from None
        if status == "ok":
            return rest[0]
        message, is_user_error = rest
        raise self._fail(CampaignsError(message) if is_user_error else RuntimeError(f"reading the state: {message}"))

    def _settle(self) -> None:
        """Read the answer still owed, if any, so that a new request may be written (rule 1)."""
        if self._owed is not None:
            ticket, self._owed = self._owed, None
            self._early[ticket] = self._read_answer()

    def _request(self, kind: str, argument: Any) -> int:
        self._check_open()  # a closed descriptor's number may already name another file
        self.snapshot()
        self._settle()
        try:
            _send(self._requests, (kind, argument))
        except OSError:
            raise self._ended() from None
        ticket = self._sent
        self._sent += 1
        self._owed = ticket
        return ticket

    def _redeem(self, ticket: int) -> Any:
        if ticket not in self._early:
            self._check_open()
            if self._owed != ticket:
                raise RuntimeError(f"no answer is due for request {ticket}")
            self._settle()
        return self._early.pop(ticket)

    # -- the questions ------------------------------------------------------------------------------

    def snapshot(self) -> StateSnapshot:
        if self._snapshot is None:
            self._check_open()
            self._snapshot = StateSnapshot.from_wire(self._read_answer())
        return self._snapshot

    def field_diffs(self, bodies: dict[str, dict[str, Any]]) -> dict[str, list[FieldDiff]]:
        return self._redeem(self._request("diffs", bodies)) if bodies else {}

    def audience_sizes(self, request: SizeRequest) -> dict[str, int | None]:
        return self._redeem(self._request("sizes", request)) if request.tasks else {}

    def attribute_gaps(self, request: SizeRequest) -> dict[str, list[list[Any]]]:
        return self._redeem(self._request("gaps", request)) if request.required else {}

    def submit_details(self, bodies: dict[str, dict[str, Any]], sizes: SizeRequest | None) -> Callable[[], Details]:
        """One request for both; the worker answers while this process renders previews."""
        if not bodies and (sizes is None or (not sizes.tasks and sizes.impact is None)):
            return lambda: ({}, {})
        ticket = self._request("details", (bodies, sizes))
        return lambda: self._redeem(ticket)

    # -- the end ------------------------------------------------------------------------------------

    def _close(self, *, kill: bool) -> int | None:
        """Close both pipe ends and reap the child; its wait status, when there was one to read."""
        if self._closed:
            return None
        self._closed = True
        for fd in (self._requests, self._replies):
            _INHERITED.discard(fd)
            try:
                os.close(fd)
            except OSError:
                pass
        if kill:  # it owes an answer nobody will read: it only reads the state, so nothing is lost
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return self._reap()

    def _reap(self) -> int | None:
        deadline = time.monotonic() + _REAP_SECONDS
        try:
            while True:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.exit_status = status
                    return status
                if time.monotonic() > deadline:  # stuck (a query that never returns): kill it
                    os.kill(self.pid, signal.SIGKILL)
                    self.exit_status = os.waitpid(self.pid, 0)[1]
                    return self.exit_status
                time.sleep(0.002)
        except (ChildProcessError, ProcessLookupError):
            return None

    def close(self) -> None:
        """End the conversation (EOF tells the child to stop); waits a few seconds at most."""
        self._close(kill=self._owed is not None)

    def __del__(self) -> None:  # pragma: no cover - a safety net; close() is always called
        if not self._closed:
            self.close()


def can_fork() -> bool:
    return hasattr(os, "fork") and not os.environ.get("CAMPAIGNS_NO_FORK")
