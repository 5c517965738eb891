"""The executor's view of emergency pauses (``campaigns pause``), re-read often and cheaply.

A pause must stop a task within 2 seconds, also in the middle of a fan-out of a million users,
so the executor asks ``held(task)`` before every batch it claims and before every provider
call, and the answer is at most ``interval`` seconds old: one small query (the ids of the
held tasks) per interval, whatever the number of calls.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from engine.state import control

if TYPE_CHECKING:
    from engine.state import StateStore

PAUSE_CHECK_S = 0.25
"""How old the executor's knowledge of the emergency pauses may be (the pause-to-stop delay is
this plus the provider call in flight)."""


class PauseWatch:
    """Which tasks are held by an emergency pause, as of at most ``interval`` seconds ago."""

    def __init__(self, store: StateStore, interval: float = PAUSE_CHECK_S) -> None:
        self.store = store
        self.interval = interval
        self._held: frozenset[str] = frozenset()
        self._read_at: float | None = None

    def refresh(self) -> frozenset[str]:
        """Read the held tasks now."""
        if not self.store.exists:
            return self._held
        with self.store.reading() as conn:
            self._held = frozenset(control.paused_ids(conn))
        self._read_at = time.monotonic()
        return self._held

    def held(self, task_id: str) -> bool:
        """Whether the task is paused outside git (re-read when the last read is too old)."""
        if self._read_at is None or time.monotonic() - self._read_at >= self.interval:
            self.refresh()
        return task_id in self._held
