"""Run ``campaigns`` as a process under a memory ceiling and a time limit.

Hostile-input tests use it so that a regression fails the test (MemoryError, killed, or timed out)
instead of taking the machine's memory or the suite's hour. The ceilings are guards against
blow-ups (minutes, gigabytes), not performance figures: those come from ``bench/``.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

MEMORY_CEILING = 1 << 30  # address space: a sound run of validate or plan needs a fraction of it
TIME_LIMIT = 120.0


@dataclass
class BoundedRun:
    code: int | None  # None: killed at the time limit
    out: str
    err: str

    @property
    def crashed(self) -> bool:
        return self.code is None or "Internal error" in self.err or "Traceback" in self.err or "MemoryError" in self.err


def campaigns_bounded(
    *args: str, cwd: Path | None = None, seconds: float = TIME_LIMIT, memory: int = MEMORY_CEILING
) -> BoundedRun:
    """``campaigns ARGS`` in a child process limited to ``memory`` bytes of address space and ``seconds``."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    try:
        result = subprocess.run(
            [sys.executable, "-m", "engine", *args],
            cwd=cwd,
            env={**os.environ, "CAMPAIGNS_WORKERS": "1"},
            capture_output=True,
            text=True,
            timeout=seconds,
            preexec_fn=limit,
        )
    except subprocess.TimeoutExpired as expired:
        def text(data: bytes | str | None) -> str:
            return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")

        return BoundedRun(None, text(expired.stdout), text(expired.stderr))
    return BoundedRun(result.returncode, result.stdout, result.stderr)
