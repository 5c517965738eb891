"""The engine's clock: real, started at an instant and running on, or fixed."""

from __future__ import annotations

import datetime as dt
import time

import pytest
import time_machine

from engine.clock import Clock, now, parse_instant

UTC = dt.timezone.utc
MANILA = dt.timezone(dt.timedelta(hours=8))
INSTANT = dt.datetime(2026, 12, 1, 9, 30, tzinfo=MANILA)


def test_a_fixed_clock_never_moves() -> None:
    clock = Clock.fixed(INSTANT)
    first = clock.now()
    time.sleep(0.01)
    assert clock.now() == first == INSTANT
    assert clock.epoch() == INSTANT.timestamp()
    assert clock.now().utcoffset() == dt.timedelta(0) and repr(clock).startswith("Clock.fixed(")


def test_a_started_clock_begins_at_its_instant_and_runs_on_in_real_time() -> None:
    clock = Clock(INSTANT)
    first = clock.now()
    assert abs((first - INSTANT).total_seconds()) < 1
    time.sleep(0.05)
    assert clock.now() > first and repr(clock).startswith("Clock(2026-12-01")


def test_the_real_clock_follows_the_machine() -> None:
    with time_machine.travel(dt.datetime(2031, 5, 6, 7, 8, tzinfo=UTC), tick=False):
        assert Clock().now() == dt.datetime(2031, 5, 6, 7, 8, tzinfo=UTC)
        assert now() == dt.datetime(2031, 5, 6, 7, 8, tzinfo=UTC)
        assert now(Clock.fixed(INSTANT)) == INSTANT
        assert repr(Clock()) == "Clock()"


@pytest.mark.parametrize("factory", [Clock, Clock.fixed])
def test_an_instant_without_a_utc_offset_is_refused(factory) -> None:
    with pytest.raises(ValueError, match="UTC offset"):
        factory(dt.datetime(2026, 12, 1, 9, 30))


def test_parse_instant() -> None:
    assert parse_instant(" 2026-12-01T09:30:00+08:00 ") == INSTANT
    assert parse_instant("2026-12-01T01:30:00Z") == INSTANT
    with pytest.raises(ValueError, match="needs a UTC offset"):
        parse_instant("2026-12-01T09:30")
    with pytest.raises(ValueError, match="is not an ISO 8601 date and time"):
        parse_instant("tomorrow")
