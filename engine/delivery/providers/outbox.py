"""The outbox provider: messages become JSON lines in ``<path>/<channel>.jsonl``.

It is the default provider, what tests and dry deployments read, and the executor benchmark
pushes a million messages through it, so ``send`` does the least work possible: each line is
built by concatenating escaped strings (byte-for-byte what ``json.dumps`` of the dict gives),
the batch is written with one ``write()`` on an ``O_APPEND`` descriptor and made durable with
one fsync.

Every line is whole. Appends hold an ``flock`` on the file, so two processes appending to it
(executor workers) never interleave; and before each append, under that lock, the file's last
byte is checked: a process killed in the middle of its ``write()`` (``kill -9``) leaves a torn
last line, which is cut off (and kept in ``<channel>.jsonl.torn``) so the next message is never
glued onto it. The torn message needs no bookkeeping here: its ledger row is still pending under
the dead executor's claim, so it is sent again with the same id (or, once the window closed,
recorded ``unconfirmed``).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from json.encoder import encode_basestring_ascii as _quote
from pathlib import Path
from typing import Callable, Sequence

from engine.errors import CampaignsError

from .base import Delivery, Message, wrong_channel

OUTBOX_KEYS = (
    "message_id",
    "task",
    "occurrence",
    "user_id",
    "channel",
    "creative",
    "title",
    "content",
    "redirection",
    "sent_at",
)
"""The keys of every outbox line, in the order they are written (SPEC section 6)."""

_sync = getattr(os, "fdatasync", os.fsync)  # appended bytes and the new size, not the mtime


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def iso_utc(moment: dt.datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` suffix, e.g. ``2026-12-01T01:00:00.000000Z``."""
    if moment.tzinfo is None:
        raise ValueError("sent_at needs an aware datetime")
    return moment.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


class Outbox:
    """Appends the messages of one channel to ``<directory>/<channel>.jsonl``.

    ``clock`` gives ``sent_at`` (one value per batch: the batch is written at once). The file
    is opened when the provider is, so a folder that cannot be written fails early and clearly.
    """

    def __init__(
        self, directory: Path, channel: str, *, clock: Callable[[], dt.datetime] = _utc_now
    ) -> None:
        self.channel = channel
        self.path = Path(directory) / f"{channel}.jsonl"
        self._clock = clock
        self.notices: list[str] = []
        """What the outbox did to its file besides appending (a torn line repaired), for the log."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(
                self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644
            )
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                self._repair()
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        except OSError as exc:
            raise CampaignsError(f"cannot open the outbox {self.path}: {exc.strerror or exc}") from exc

    def send(self, messages: Sequence[Message]) -> list[Delivery]:
        """Write the batch as JSON lines, one write and one fsync; every written message is sent."""
        if self._fd is None:
            raise CampaignsError(f"the outbox {self.path} is closed")
        if not messages:
            return []
        q = _quote
        channel = self.channel
        tail = ', "sent_at": ' + q(iso_utc(self._clock())) + "}\n"
        lines: list[str] = []
        append = lines.append
        refused: dict[int, Delivery] = {}
        for index, m in enumerate(messages):
            if m.channel != channel:
                refused[index] = wrong_channel(m, channel)
                continue
            title, content, redirection = m.title, m.content, m.redirection
            append(
                '{"message_id": ' + q(m.message_id)
                + ', "task": ' + q(m.task)
                + ', "occurrence": ' + q(m.occurrence)
                + ', "user_id": ' + q(m.user_id)
                + ', "channel": ' + q(m.channel)
                + ', "creative": ' + q(m.creative)
                + ', "title": ' + ("null" if title is None else q(title))
                + ', "content": ' + ("null" if content is None else q(content))
                + ', "redirection": '
                + (q(redirection) if type(redirection) is str else json.dumps(redirection))
                + tail
            )
        if lines:
            self._write("".join(lines).encode("ascii"))
        if not refused:
            return [Delivery(m.message_id, "sent", 1) for m in messages]
        return [refused.get(i) or Delivery(m.message_id, "sent", 1) for i, m in enumerate(messages)]

    def _write(self, data: bytes) -> None:
        """Under the file's lock: repair a torn tail, one ``write()`` for the batch (a regular
        file takes it whole); then, the lock released, one fsync."""
        fd = self._fd
        assert fd is not None
        view = memoryview(data)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                self._repair()
                while view:  # a short write only happens as the disk fills; the next write then raises
                    view = view[os.write(fd, view) :]
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            _sync(fd)
        except OSError as exc:
            raise CampaignsError(f"cannot write the outbox {self.path}: {exc.strerror or exc}") from exc

    def _repair(self) -> None:
        """If the file does not end with a newline (a writer was killed mid-write), cut it back
        to its last newline; the cut bytes are appended to ``<file>.torn``. Call under the lock."""
        fd = self._fd
        assert fd is not None
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return
        keep, end = 0, size
        while end > 0:
            start = max(0, end - (1 << 16))
            found = os.pread(fd, end - start, start).rfind(b"\n")
            if found >= 0:
                keep = start + found + 1
                break
            end = start
        fragment = os.pread(fd, size - keep, keep)
        torn = self.path.with_name(self.path.name + ".torn")
        with open(torn, "ab") as kept:
            kept.write(fragment + b"\n")
            kept.flush()
            os.fsync(kept.fileno())
        os.ftruncate(fd, keep)
        _sync(fd)
        self.notices.append(
            f"the outbox {self.path} ended in a torn line ({size - keep:,} bytes at offset {keep:,}, from a process "
            f"killed while writing); it was cut off (kept in {torn.name}) before appending. Its message is still "
            "pending in the ledger: it is sent again with the same id, or recorded unconfirmed once the window closed"
        )

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
