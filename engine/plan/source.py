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
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from engine.errors import CampaignsError

if TYPE_CHECKING:
    from engine.plan.model import FieldDiff
    from engine.state import StateStore, TaskState

AUDIENCE_SIZE_LIMIT = 200  # tasks per plan whose audience is counted (each count is a query)


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
        )

    def to_wire(self) -> tuple:
        """Plain tuples: much cheaper to pickle than 10,000 dataclasses."""
        states = [(s.task_id, s.status, s.content_digest) for s in self.task_states.values()]
        return (self.lineage, self.serial, self.digests, states, self.passing, self.display)

    @classmethod
    def from_wire(cls, wire: tuple) -> StateSnapshot:
        lineage, serial, digests, states, passing, display = wire
        return cls(lineage, serial, digests, {row[0]: SnapshotTask(*row) for row in states}, passing, display)


@dataclass
class SizeRequest:
    """Audience sizes wanted for some tasks: their bodies, every audience body, CSV contents."""

    platform: dict[str, Any]
    base_dir: str
    tasks: dict[str, dict[str, Any]]
    audiences: dict[str, dict[str, Any]]
    attachments: dict[str, bytes]


Details = tuple[dict[str, list["FieldDiff"]], dict[str, "int | None"]]


class StateSource(Protocol):
    def snapshot(self) -> StateSnapshot: ...

    def submit_details(self, bodies: dict[str, dict[str, Any]], sizes: SizeRequest | None) -> Callable[[], Details]:
        """Ask for field differences and audience sizes; the answer comes when the result is called."""
        ...

    def field_diffs(self, bodies: dict[str, dict[str, Any]]) -> dict[str, list[FieldDiff]]: ...

    def audience_sizes(self, request: SizeRequest) -> dict[str, int | None]: ...

    def close(self) -> None: ...


# -- the work itself (runs in whichever process holds the store) ---------------------------------


def diffs_against_state(store: StateStore, bodies: dict[str, dict[str, Any]]) -> dict[str, list[FieldDiff]]:
    from engine.plan.diff import field_diffs

    stored = store.resources(list(bodies))
    return {address: field_diffs(stored[address].body, body) for address, body in bodies.items() if address in stored}


def sizes_from_directory(store: StateStore, request: SizeRequest) -> dict[str, int | None]:
    """Audience sizes by the user-directory package, when it is installed (else none)."""
    try:
        from engine.delivery.audiences import audience_size
        from engine.delivery.directory import open_directory
    except ImportError:
        return {}
    from engine.config.models import Platform

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

    def submit_details(self, bodies: dict[str, dict[str, Any]], sizes: SizeRequest | None) -> Callable[[], Details]:
        return lambda: (self.field_diffs(bodies), self.audience_sizes(sizes) if sizes is not None else {})

    def close(self) -> None:
        pass


# -- the forked worker ----------------------------------------------------------------------------

_HEADER = struct.Struct("!Q")


def _send(fd: int, value: Any) -> None:
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
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _failure(problem: BaseException) -> tuple[str, str, bool]:
    return ("error", str(problem) or type(problem).__name__, isinstance(problem, CampaignsError))


def _warm_up(base_dir: str) -> None:
    """Import what the answers need while the parent is still loading the repository."""
    for module in (
        "deepdiff",
        "engine.plan.diff",
        "engine.config.models",
        "engine.delivery.audiences",
        "engine.delivery.directory",
        "engine.delivery.directory_tables",
    ):
        try:
            __import__(module)
        except ImportError:
            pass
    try:  # the first validation of a model builds its validators
        from engine.config.models import Platform
        from engine.config.settings import read_platform

        Platform.model_validate(read_platform(Path(base_dir)) or {})
    except Exception:  # noqa: BLE001 - only a warm-up; the real request reports real problems
        pass


def _serve(url: str, base_dir: str, create: bool, requests: int, replies: int) -> None:
    """The child: open the state, send the snapshot, then answer until told to stop."""
    try:
        from engine.state import StateStore

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
        # (the write blocks without the GIL) import what the answers will need.
        import threading

        sender = threading.Thread(target=_send_quietly, args=(replies, ("ok", wire)), daemon=True)
        sender.start()
        _warm_up(base_dir)
        sender.join()
        while True:
            try:
                kind, argument = _receive(requests)
            except EOFError:
                return
            if kind == "stop":
                return
            try:
                if kind == "diffs":
                    _send(replies, ("ok", diffs_against_state(store, argument)))
                elif kind == "sizes":
                    _send(replies, ("ok", sizes_from_directory(store, argument)))
                else:
                    _send(replies, ("error", f"unknown request {kind!r}", False))
            except BaseException as problem:  # noqa: BLE001
                _send(replies, _failure(problem))
    finally:
        store.close()


class ForkedSource:
    """Answers from a child process that opened the state while this one did other work."""

    def __init__(self, pid: int, requests: int, replies: int) -> None:
        self.pid = pid
        self._requests = requests
        self._replies = replies
        self._snapshot: StateSnapshot | None = None
        self._closed = False

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
        return cls(pid, request_write, reply_read)

    def _answer(self) -> Any:
        try:
            status, *rest = _receive(self._replies)
        except EOFError:
            self.close()
            raise CampaignsError("the state reader process ended unexpectedly") from None
        if status == "ok":
            return rest[0]
        message, is_user_error = rest
        self.close()
        if is_user_error:
            raise CampaignsError(message)
        raise RuntimeError(message)

    def snapshot(self) -> StateSnapshot:
        if self._snapshot is None:
            self._snapshot = StateSnapshot.from_wire(self._answer())
        return self._snapshot

    def _ask(self, kind: str, argument: Any) -> Any:
        self.snapshot()
        _send(self._requests, (kind, argument))
        return self._answer()

    def field_diffs(self, bodies: dict[str, dict[str, Any]]) -> dict[str, list[FieldDiff]]:
        return self._ask("diffs", bodies) if bodies else {}

    def audience_sizes(self, request: SizeRequest) -> dict[str, int | None]:
        return self._ask("sizes", request) if request.tasks else {}

    def submit_details(self, bodies: dict[str, dict[str, Any]], sizes: SizeRequest | None) -> Callable[[], Details]:
        """Both questions go out at once; the worker answers while this process renders previews."""
        self.snapshot()
        asked = []
        if bodies:
            _send(self._requests, ("diffs", bodies))
            asked.append("diffs")
        if sizes is not None and sizes.tasks:
            _send(self._requests, ("sizes", sizes))
            asked.append("sizes")

        def result() -> Details:
            answers = {kind: self._answer() for kind in asked}
            return answers.get("diffs", {}), answers.get("sizes", {})

        return result

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            _send(self._requests, ("stop", None))
        except OSError:
            pass
        for fd in (self._requests, self._replies):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass

    def __del__(self) -> None:  # pragma: no cover - a safety net; close() is always called
        if not self._closed:
            self.close()


def can_fork() -> bool:
    return hasattr(os, "fork") and not os.environ.get("CAMPAIGNS_NO_FORK")
