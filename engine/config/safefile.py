"""Opening repository files without trusting what they are: a FIFO never blocks a command, a
device is never streamed, and every refusal names what the file is."""

from __future__ import annotations

import os
import stat


def special_kind(mode: int) -> str:
    """What a file that is not a regular file or a folder is, for messages."""
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def open_regular(path: str) -> int:
    """An ``os.open`` descriptor on a regular file, never blocking on a FIFO: opened with
    O_NONBLOCK and checked with fstat before anything reads it (raises OSError, or ValueError
    naming what the file is)."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise ValueError("a folder" if stat.S_ISDIR(mode) else special_kind(mode))
        os.set_blocking(descriptor, True)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor
