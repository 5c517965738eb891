"""A forward-only cursor over a task's member stream (lists of members in ``user_id`` order).

The claim protocol hands out members by position in that order: ``last_user`` on the
occurrence's progress row says everyone up to it has a ledger row. Each executor reads the
stream itself and, when another executor has moved the cursor on, skips what it already got.

``prefetch`` reads ahead outside the claim transaction, so the time a claim holds the
occurrence's lock is spent writing rows, not waiting on the audience query.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any


class MemberStream:
    """Walks ``batches`` (lists of objects with ``user_id``, ordered by it) forward only."""

    def __init__(self, batches: Iterable[list[Any]]) -> None:
        self._batches: Iterator[list[Any]] = iter(batches)
        self._lists: deque[list[Any]] = deque()  # read, not yet passed; the first starts at _index
        self._index = 0
        self._buffered = 0  # members in _lists from _index on
        self._done = False
        self.last_seen: str | None = None  # the user_id of the last member passed or taken

    def _read(self) -> bool:
        """Read one more list from the source; False at its end."""
        while not self._done:
            try:
                batch = next(self._batches)
            except StopIteration:
                self._done = True
                self.close()
                return False
            if batch:
                self._lists.append(batch)
                self._buffered += len(batch)
                return True
        return False

    def _head(self) -> list[Any] | None:
        """The list holding the next member (None at the end of the stream)."""
        while True:
            if self._lists and self._index < len(self._lists[0]):
                return self._lists[0]
            if self._lists:
                self._lists.popleft()
                self._index = 0
                continue
            if not self._read():
                return None

    def _advance(self, count: int) -> None:
        self._index += count
        self._buffered -= count

    @property
    def exhausted(self) -> bool:
        return self._head() is None

    def prefetch(self, count: int) -> None:
        """Read ahead until ``count`` members are buffered (or the stream ends)."""
        while self._buffered < count and self._read():
            pass

    def skip_through(self, user_id: str | None) -> None:
        """Pass every member whose user_id is ``<= user_id``."""
        if user_id is None:
            return
        while (head := self._head()) is not None:
            index = self._index
            if head[-1].user_id <= user_id:  # the whole rest of this list goes
                self.last_seen = head[-1].user_id
                self._advance(len(head) - index)
                continue
            start = index
            while head[index].user_id <= user_id:
                index += 1
            if index > start:
                self.last_seen = head[index - 1].user_id
                self._advance(index - start)
            return

    def take(self, after: str | None, limit: int) -> tuple[list[Any], bool]:
        """Up to ``limit`` members with user_id ``> after``, and whether the stream is over."""
        self.skip_through(after)
        taken: list[Any] = []
        while len(taken) < limit and (head := self._head()) is not None:
            end = min(len(head), self._index + (limit - len(taken)))
            taken.extend(head[self._index : end])
            self._advance(end - self._index)
        if taken:
            self.last_seen = taken[-1].user_id
        return taken, self.exhausted

    def take_range(self, first: str, last: str) -> list[Any]:
        """The members with ``first <= user_id <= last`` (members before ``first`` are passed)."""
        found: list[Any] = []
        while (head := self._head()) is not None:
            member = head[self._index]
            if member.user_id > last:
                break
            self._advance(1)
            self.last_seen = member.user_id
            if member.user_id >= first:
                found.append(member)
        return found

    def close(self) -> None:
        close = getattr(self._batches, "close", None)
        if close is not None:
            close()
