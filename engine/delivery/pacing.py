"""Pacing: keep a channel's sends at or under the site's ``rate_per_second``.

Two layers, because executors may run on several machines:

- ``reserve_slot`` (the ledger does it in the claim transaction) hands each claimed batch its
  own stretch of time on a per-(site, channel) timeline stored in the state: a batch of ``n``
  messages at ``rate`` occupies ``n / rate`` seconds starting no earlier than the previous
  batch's stretch ends. Stretches never overlap, so all executors together stay under the rate.
- ``TokenBucket`` spreads the messages of one batch over its stretch inside the process, so a
  batch of 1,000 at 500/s goes out as small bursts over two seconds, not all at once.

Pacing uses the real clock (``time.time``), never the simulated ``--now`` of a test run: it is
about how fast messages really leave, not about which window they belong to.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

STALE_AHEAD_S = 120.0
"""A timeline further ahead than this is treated as stale (another machine's skewed clock, or a
test that simulated other times) and restarts from now, instead of making an executor wait."""
MIN_PACE_FACTOR = 0.05
"""However often the wallet says slow down, a channel keeps at least this share of its rate."""


def reserve_slot(next_free: float | None, now: float, count: int, rate: float) -> tuple[float, float]:
    """Where a batch of ``count`` messages goes on a timeline whose free time starts at
    ``next_free``: returns ``(start, new_next_free)``."""
    start = now if next_free is None or next_free < now or next_free > now + STALE_AHEAD_S else next_free
    return start, start + count / rate


def burst_size(rate: float) -> int:
    """Messages sent at once between pauses: about a tenth of a second's worth, at least one."""
    return max(1, int(rate / 10))


def batch_limit(rate: float | None, batch_size: int, seconds: float = 2.0) -> int:
    """Messages one claim may take: ``batch_size``, but at a low rate no more than ``seconds``
    worth, so a batch in hand (what a stop waits for) stays short."""
    if rate is None:
        return batch_size
    return max(1, min(batch_size, int(rate * seconds)))


class TokenBucket:
    """A token bucket of ``rate`` tokens per second holding at most ``burst`` tokens.

    ``take(n)`` waits (through ``wait``, which returns True to stop early) until ``n`` tokens
    are there and spends them. The bucket starts empty at ``start`` (a reserved stretch may
    begin in the future) so a batch never bursts past its stretch.
    """

    def __init__(
        self,
        rate: float,
        burst: int | None = None,
        *,
        start: float | None = None,
        clock: Callable[[], float] = time.time,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = max(1, burst if burst is not None else burst_size(rate))
        self._clock = clock
        self._wait = wait or _sleep
        self._tokens = 0.0
        self._at = clock() if start is None else start

    def _refill(self) -> None:
        now = self._clock()
        if now > self._at:
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
            self._at = now

    def delay(self, count: int) -> float:
        """Seconds until ``count`` tokens are available (0 when they are)."""
        self._refill()
        missing = min(count, self.burst) - self._tokens
        ahead = max(0.0, self._at - self._clock())  # a stretch that starts in the future
        return ahead + (missing / self.rate if missing > 0 else 0.0)

    def take(self, count: int) -> bool:
        """Wait for and spend ``count`` tokens (at most ``burst`` at a time); False when the
        wait was interrupted (nothing spent)."""
        if count > self.burst:
            raise ValueError(f"cannot take {count} tokens at once from a bucket of {self.burst}")
        while True:
            pause = self.delay(count)
            if pause <= 0:
                self._tokens -= count
                return True
            if self._wait(pause):
                return False


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False


class Pace:
    """Spreads requests over time at ``rate`` messages a second, across the concurrent requests
    of a provider (thread-safe, never blocks: ``reserve`` says how long to wait).

    Starts at ``start`` (a reserved stretch of the channel's timeline may begin in the future)
    and allows a burst of ``burst`` messages. ``slow_down`` halves the rate (the wallet said
    ``REQUEST_TRAFFIC_EXCEED_LIMIT``)."""

    def __init__(self, rate: float, *, start: float | None = None, burst: int = 20, clock: Callable[[], float] = time.time) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self._floor = self.rate * MIN_PACE_FACTOR
        self._burst = max(1, burst)
        self._clock = clock
        self._next = clock() if start is None else start
        self._lock = threading.Lock()

    def reserve(self, count: int) -> float:
        """Seconds to wait before sending ``count`` messages (they are booked on the timeline)."""
        with self._lock:
            now = self._clock()
            earliest = now - self._burst / self.rate
            if self._next < earliest:
                self._next = earliest
            at = self._next
            self._next = at + count / self.rate
            return max(0.0, at - now)

    def slow_down(self) -> None:
        with self._lock:
            self.rate = max(self._floor, self.rate / 2)
