"""The two ways the state lock is really taken; both die with the process that holds them.

- PostgreSQL: ``pg_try_advisory_lock(key)`` on a dedicated connection kept open while held. The
  key derives from the database and schema, so two states on one server never share a lock.
  A SIGKILLed holder's session ends and the server releases the lock.
- SQLite: ``flock`` on ``<database file>.lock``. The kernel drops it when the holder exits.

Who holds the lock (user, host, pid, operation, time) is a row in ``campaigns_lock``, written by
the store after it takes the real lock; this module only knows about the real lock.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import os
import socket
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, Engine, text

from engine.state.errors import LockStillHeld, StateError


def advisory_key(purpose: str, database: str, schema: str) -> int:
    """A signed 64-bit advisory lock key for (purpose, database, schema)."""
    digest = hashlib.sha256(f"campaigns:{purpose}:{database}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def whoami() -> tuple[str, str, int]:
    """(user, host, pid) of this process, for the lock holder row and the history."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        user = os.environ.get("USER") or f"uid{os.getuid()}"
    return user, socket.gethostname(), os.getpid()


class LockBackend(Protocol):
    connection: Connection | None

    def try_acquire(self) -> bool:
        """Take the lock without waiting; False when another holder has it."""

    def release(self) -> None:
        """Give the lock back (never raises)."""

    def held_elsewhere(self) -> bool:
        """True when some other holder has the lock right now."""

    def break_lock(self, describe: str) -> AbstractContextManager[None]:
        """Hold the lock for the duration, ending a stale holder if the backend can (PostgreSQL
        terminates its session) or raising LockStillHeld when it must not (SQLite: a live process)."""


class FileLock:
    """``flock`` on a file next to the SQLite database."""

    connection = None  # writes use the store's pool (SQLite serialises writers itself)

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def _try(self) -> int | None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as problem:
            raise StateError(f"cannot open the state lock file {self.path}: {problem.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        return fd

    def try_acquire(self) -> bool:
        if self._fd is not None:
            raise RuntimeError("state lock already held by this store")
        self._fd = self._try()
        return self._fd is not None

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def held_elsewhere(self) -> bool:
        if self._fd is not None:
            return False
        fd = self._try()
        if fd is None:
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        return False

    @contextmanager
    def break_lock(self, describe: str) -> Iterator[None]:
        # A live flock means a live process: refuse rather than let two applies run at once.
        if not self.try_acquire():
            raise LockStillHeld(
                f"the state lock is still held by a running process: {describe}; "
                "stop that process (its lock goes away when it exits)"
            )
        try:
            yield
        finally:
            self.release()


class AdvisoryLock:
    """A PostgreSQL session-level advisory lock on its own connection."""

    def __init__(self, engine: Engine, key: int) -> None:
        self.engine = engine
        self.key = key
        self._conn: Connection | None = None

    @property
    def connection(self) -> Connection | None:
        """The session holding the lock: the store runs its writes on it, so ending this
        session (``state unlock``) also aborts the holder's open transaction."""
        return self._conn

    def try_acquire(self) -> bool:
        if self._conn is not None:
            raise RuntimeError("state lock already held by this store")
        conn = self.engine.connect()
        try:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}).scalar()
            conn.commit()  # a session-level advisory lock outlives the transaction that took it
        except BaseException:
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.rollback()
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
            conn.commit()
            conn.close()
        except Exception:  # noqa: BLE001 - e.g. the session was terminated by `state unlock`
            conn.invalidate()
            conn.close()

    def holder_pids(self) -> list[int]:
        """Server process ids of the sessions holding this advisory lock."""
        unsigned = self.key & 0xFFFFFFFFFFFFFFFF
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    text(
                        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                        " AND classid::bigint = :hi AND objid::bigint = :lo AND objsubid = 1"
                    ),
                    {"hi": unsigned >> 32, "lo": unsigned & 0xFFFFFFFF},
                ).scalars()
            )

    def held_elsewhere(self) -> bool:
        return self._conn is None and bool(self.holder_pids())

    @contextmanager
    def break_lock(self, describe: str) -> Iterator[None]:
        deadline = time.monotonic() + 10
        while not self.try_acquire():
            pids = self.holder_pids()
            with self.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT")
                for pid in pids:
                    try:
                        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                    except Exception as problem:  # noqa: BLE001 - typically: permission denied
                        first = str(getattr(problem, "orig", problem)).splitlines()[0]
                        raise LockStillHeld(
                            f"cannot end PostgreSQL session {pid} that holds the state lock ({describe}): {first}"
                        ) from None
            if time.monotonic() > deadline:
                raise LockStillHeld(f"PostgreSQL sessions {pids} still hold the state lock after being ended")
            time.sleep(0.05)
        try:
            yield
        finally:
            self.release()
