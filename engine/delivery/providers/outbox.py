"""The outbox provider: messages become JSON lines in ``<path>/<channel>.jsonl``.

It is the default provider, what tests and dry deployments read, and the executor benchmark
pushes a million messages through it, so ``send`` does the least work possible: each line is
built by concatenating escaped strings (byte-for-byte what ``json.dumps`` of the dict gives),
the batch is written with one ``write()`` on an ``O_APPEND`` descriptor and made durable with
one fsync. One write per batch is also what keeps two processes appending to the same file from
tearing each other's lines.
"""

from __future__ import annotations

import datetime as dt
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
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(
                self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644
            )
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
        """One ``write()`` for the batch (a regular file takes it whole), then one fsync."""
        fd = self._fd
        assert fd is not None
        view = memoryview(data)
        try:
            while view:  # a short write only happens as the disk fills; the next write then raises
                view = view[os.write(fd, view) :]
            _sync(fd)
        except OSError as exc:
            raise CampaignsError(f"cannot write the outbox {self.path}: {exc.strerror or exc}") from exc

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
