"""Fixtures for the state tests: real separate processes that hold the lock or an open apply."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HOLDER = Path(__file__).with_name("holder_process.py")


class Holder:
    """A child process started by ``spawn_holder``: ``.ready`` is what it printed after READY."""

    def __init__(self, proc: subprocess.Popen[str], ready: str) -> None:
        self.proc = proc
        self.ready = ready

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: no cleanup runs in the child."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)


@pytest.fixture
def spawn_holder(tmp_path: Path) -> Iterator[Callable[..., Holder]]:
    """``spawn_holder(url, "lock"|"transaction", *args)`` starts holder_process.py and waits until
    it says READY. Every child is killed at the end of the test."""
    children: list[subprocess.Popen[str]] = []

    def spawn(url: str, mode: str, *args: str, timeout: float = 60) -> Holder:
        proc = subprocess.Popen(
            [sys.executable, str(HOLDER), url, str(tmp_path), mode, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        children.append(proc)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else ""
        if not line.startswith("READY"):
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise AssertionError(f"holder process did not get ready: {line!r} {err[-2000:]}")
        return Holder(proc, line.split(maxsplit=1)[1].strip())

    yield spawn
    for proc in children:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
