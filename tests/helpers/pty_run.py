"""Run ``campaigns`` on a pseudo-terminal, as a person at a terminal would, and read what it shows."""

from __future__ import annotations

import errno
import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\x1b[()][A-Z0-9]")
SGR = re.compile(r"\x1b\[[0-9;]*m")
"""Select Graphic Rendition: the escapes that colour and style (not the cursor moves of a live bar)."""


def on_terminal(*args: str, cwd: Path | None = None, env: dict[str, str | None] | None = None, columns: int = 80,
                timeout: float = 120) -> tuple[int, str]:
    """``campaigns ARGS`` with stdin, stdout and stderr on one pty ``columns`` wide: (exit code, raw output)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    environment = {**os.environ, "TERM": "xterm-256color", **(env or {})}
    for name in [name for name, value in environment.items() if value is None]:
        environment.pop(name)
    process = subprocess.Popen([sys.executable, "-m", "engine", *args], stdin=follower, stdout=follower, stderr=follower,
                               cwd=cwd, env=environment, close_fds=True)
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(leader, 65536)
            except OSError as problem:  # EIO: the process closed its side
                if problem.errno != errno.EIO:
                    raise
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
        os.close(leader)
    return code, b"".join(chunks).decode("utf-8", "replace")


def screen_lines(raw: str) -> list[str]:
    """The lines as they end up on the screen, roughly: escapes removed, each line what follows its last carriage return."""
    text = ANSI.sub("", raw).replace("\r\n", "\n")
    return [line.rsplit("\r", 1)[-1] for line in text.split("\n")]
