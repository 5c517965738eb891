"""Bounded JSON: read and parse JSON that another party wrote, with a byte cap and a depth cap.

GitHub event files, saved plans and the gateway's replies come from outside this process. The
standard ``json`` module parses them recursively (100,000 nested brackets raise RecursionError)
and reads whatever size it is given. Here every such document is

- at most ``max_bytes`` long: a file is measured before it is read (and never read past the
  cap, which also covers pipes and devices), a reply is cut off while it streams in;
- at most ``max_depth`` arrays/objects deep, checked *before* parsing and without recursion:
  a few C-level passes over the bytes drop the strings and keep the brackets, which C-level
  iterators then count, so the check is linear in the size (a tenth of the parse) and never
  recurses;
- strict JSON: ``NaN``/``Infinity`` are refused, and so is an integer longer than Python's
  digit limit (a ValueError from ``json``, reported like any other syntax error).

Each refusal is a ``CampaignsError`` subclass with a one-line message that names the document.
"""

from __future__ import annotations

import json
import os
import re
import stat
from itertools import accumulate, count
from operator import sub
from pathlib import Path
from typing import Any

from engine.errors import CampaignsError

MiB = 1 << 20
DEFAULT_MAX_DEPTH = 100
"""Nesting depth allowed by default: far beyond any event, plan or reply, far below Python's
recursion limit (so code that walks the parsed value recursively is safe too)."""

# Every byte but quotes and brackets; a quoted run left after empty strings are gone.
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_QUOTED = re.compile(rb'"[^"]*+"')
_OPEN_TO_TWO = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")


class JSONLimitError(CampaignsError):
    """A JSON document from outside is refused (too large, too deep, or not JSON)."""


class JSONTooLarge(JSONLimitError):
    """The document is longer than its byte cap."""


class JSONTooDeep(JSONLimitError):
    """The document nests arrays/objects deeper than its depth cap."""


class JSONInvalid(JSONLimitError):
    """The document is not (strict, UTF-8) JSON. ``decode_error`` is json's own error, if any."""

    def __init__(self, message: str, decode_error: json.JSONDecodeError | None = None) -> None:
        super().__init__(message)
        self.decode_error = decode_error


class JSONNotText(JSONInvalid):
    """The document is not UTF-8 text at all (a binary file)."""


def _limit(max_bytes: int) -> str:
    if max_bytes >= MiB and max_bytes % MiB == 0:
        return f"{max_bytes // MiB} MiB"
    return f"{max_bytes:,} bytes"


def too_large(what: str, max_bytes: int, size: int | None = None) -> JSONTooLarge:
    if size is None:
        return JSONTooLarge(f"{what} is over {_limit(max_bytes)}, the most that is accepted")
    return JSONTooLarge(f"{what} is {size:,} bytes; at most {_limit(max_bytes)} is accepted")


def read_limited(path: Path | str, max_bytes: int, what: str) -> bytes:
    """The bytes of ``path``, at most ``max_bytes`` of them (JSONTooLarge beyond; OSError as is).

    A regular file is measured before it is read. Anything else (a pipe, a device) is read up to
    the cap and no further. The file is opened without blocking, so a FIFO nobody writes to
    reads as empty instead of hanging."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        status = os.fstat(fd)
        if stat.S_ISDIR(status.st_mode):
            raise IsADirectoryError(21, "Is a directory", str(path))
        if stat.S_ISREG(status.st_mode) and status.st_size > max_bytes:
            raise too_large(what, max_bytes, status.st_size)
        chunks: list[bytes] = []
        left = max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 4 * MiB))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        raw = b"".join(chunks)
    finally:
        os.close(fd)
    if len(raw) > max_bytes:
        raise too_large(what, max_bytes)
    return raw


def nesting_depth(raw: bytes | bytearray | memoryview) -> int:
    """How deep arrays and objects nest in ``raw`` (JSON text), without parsing or recursion.

    Brackets inside strings do not count. For malformed JSON the figure is at least the deepest
    nesting a parser reaches before it finds the error, so it still bounds the parser's recursion.
    Every step is a C-level pass over the bytes: linear time, whatever the input."""
    data = bytes(raw)
    if b"\\" in data:  # escapes only occur in strings: drop escaped backslashes, then escaped quotes
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Now every quote delimits a string. Keep quotes and brackets only, drop the strings that
    # hold no bracket (two adjacent quotes), then the quoted runs that are left.
    skeleton = _QUOTED.sub(b"", data.translate(None, _NOT_STRUCTURE).replace(b'""', b""))
    skeleton = skeleton.split(b'"', 1)[0]  # an unterminated string: a parser stops there
    openers = skeleton.count(b"[") + skeleton.count(b"{")
    if openers <= 1:
        return openers
    # Openers count 2, closers 0: after i brackets the running sum minus i is the depth there.
    values = skeleton.translate(_OPEN_TO_TWO)
    return max(0, max(map(sub, accumulate(values), count(1))))


def check_depth(raw: bytes | bytearray | memoryview, max_depth: int, what: str) -> None:
    """JSONTooDeep when ``raw`` nests deeper than ``max_depth``."""
    depth = nesting_depth(raw)
    if depth > max_depth:
        raise JSONTooDeep(f"{what} nests {depth:,} levels deep; at most {max_depth} are accepted")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def loads(raw: bytes | bytearray | memoryview, *, what: str, max_bytes: int, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Parse ``raw`` (UTF-8 JSON) within the limits; JSONTooLarge, JSONTooDeep or JSONInvalid."""
    if len(raw) > max_bytes:
        raise too_large(what, max_bytes, len(raw))
    check_depth(raw, max_depth, what)
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise JSONNotText(f"{what} is not UTF-8 text") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise JSONInvalid(f"{what} is empty")
    try:
        return json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as problem:
        raise JSONInvalid(f"{what} is not valid JSON: {problem}", problem) from None
    except (ValueError, RecursionError) as problem:  # an over-long integer, NaN; recursion: belt and braces
        raise JSONInvalid(f"{what} is not valid JSON: {str(problem).splitlines()[0]}") from None


def read_file(path: Path | str, *, what: str, max_bytes: int, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Read and parse the JSON file ``path`` within the limits (OSError passes through)."""
    return loads(read_limited(path, max_bytes, what), what=what, max_bytes=max_bytes, max_depth=max_depth)
