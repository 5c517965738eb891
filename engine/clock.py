"""The engine's one source of "now", injectable so that every time-dependent decision can be
reproduced: which occurrences are due, since when a task runs, what a report counts as behind,
which dates lie in the past.

    Clock()                   the machine's clock
    Clock(start)              starts at ``start`` and runs on in real time (``run --once --now``:
                              a fan-out that starts a second before a window closes still stops
                              at the close)
    Clock.fixed(instant)      always ``instant`` (``report``/``status``/``validate --now``, tests)

Only decisions go through a clock. Elapsed-time measurements (timeouts, back-off, pacing,
progress) use ``time.monotonic``/``time.time`` directly: a simulated instant must never make the
engine wait, or hurry, in real time.

This module imports nothing from the engine, so every layer (config, validation, schedule, plan,
apply, state, delivery) may use it.
"""

from __future__ import annotations

import datetime as dt
import time

UTC = dt.timezone.utc


def _aware(moment: dt.datetime, what: str) -> dt.datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"the {what} needs a UTC offset")
    return moment


class Clock:
    """The real clock, a clock shifted to start at ``start`` (it then advances in real time), or
    (``Clock.fixed``) a frozen instant."""

    __slots__ = ("_offset", "_frozen")

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._frozen: float | None = None
        self._offset = 0.0 if start is None else _aware(start, "simulated start").timestamp() - time.time()

    @classmethod
    def fixed(cls, instant: dt.datetime) -> Clock:
        """A clock that always says ``instant``."""
        clock = cls()
        clock._frozen = _aware(instant, "fixed instant").timestamp()
        return clock

    @classmethod
    def of(cls, instant: dt.datetime | None) -> Clock:
        """``Clock.fixed(instant)``, or the real clock when ``instant`` is None."""
        return cls() if instant is None else cls.fixed(instant)

    def epoch(self) -> float:
        """Seconds since the Unix epoch."""
        if self._frozen is not None:
            return self._frozen
        return time.time() + self._offset

    def now(self) -> dt.datetime:
        """The current instant, in UTC."""
        return dt.datetime.fromtimestamp(self.epoch(), UTC)

    def __repr__(self) -> str:
        if self._frozen is not None:
            return f"Clock.fixed({self.now().isoformat()})"
        return f"Clock({self.now().isoformat()})" if self._offset else "Clock()"


SYSTEM = Clock()
"""The machine's clock (the default wherever a clock is optional)."""


def now(clock: Clock | None = None) -> dt.datetime:
    """``clock.now()``, or the machine's time when no clock was given."""
    return (clock or SYSTEM).now()


def parse_instant(text: str) -> dt.datetime:
    """An ISO 8601 instant with a UTC offset (``Z`` allowed); ValueError says what is wrong."""
    stripped = text.strip()
    try:
        moment = dt.datetime.fromisoformat(stripped)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 date and time (e.g. 2026-12-01T09:30:00+08:00)") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{text!r} needs a UTC offset, e.g. {stripped}+08:00 or {stripped}Z")
    return moment
