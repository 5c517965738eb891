"""The executor's small parts: message ids, the creative split, the token bucket and the pacing
timeline, and the member stream cursor."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.delivery.ids import creative_index, message_id
from engine.delivery.pacing import STALE_AHEAD_S, TokenBucket, batch_limit, reserve_slot
from engine.delivery.stream import MemberStream

ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=32)


@given(ids, st.sampled_from(["once", "2026-12-01", "test"]), ids)
def test_message_ids_are_deterministic_short_and_distinct(task: str, occurrence: str, user: str) -> None:
    found = message_id(task, occurrence, user)
    assert found == message_id(task, occurrence, user)
    assert len(found) <= 64 and found.isalnum()
    assert found != message_id(task, occurrence, user + "x")
    assert found != message_id(task + "x", occurrence, user)
    assert message_id("a", "b:c", "d") != message_id("a:b", "c", "d")


def test_creatives_split_evenly_and_stably() -> None:
    users = [f"user-{i}" for i in range(30_000)]
    split = Counter(creative_index("flash-sale", user, 3) for user in users)
    assert set(split) == {0, 1, 2} and all(9_500 <= count <= 10_500 for count in split.values())
    assert [creative_index("flash-sale", u, 3) for u in users[:50]] == [creative_index("flash-sale", u, 3) for u in users[:50]]
    other = Counter((creative_index("flash-sale", u, 2), creative_index("other-task", u, 2)) for u in users)
    assert all(6_900 <= count <= 8_100 for count in other.values())  # independent across tasks
    assert creative_index("t", "u", 1) == 0


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return False


def test_token_bucket_keeps_the_rate() -> None:
    fake = FakeTime()
    bucket = TokenBucket(100, 10, clock=fake.clock, wait=fake.wait)
    start = fake.now
    for _ in range(50):
        assert bucket.take(10)
    assert fake.now - start == pytest.approx(5.0, abs=0.01)  # 500 tokens at 100/s


def test_token_bucket_waits_for_a_stretch_in_the_future_and_can_be_stopped() -> None:
    fake = FakeTime()
    bucket = TokenBucket(10, 1, start=fake.now + 3, clock=fake.clock, wait=fake.wait)
    assert bucket.take(1)
    assert fake.now == pytest.approx(1003.1)
    stopped = TokenBucket(10, 1, start=fake.now + 3, clock=fake.clock, wait=lambda seconds: True)
    assert stopped.take(1) is False
    with pytest.raises(ValueError):
        bucket.take(2)


def test_pacing_timeline_reservations() -> None:
    assert reserve_slot(None, 100.0, 50, 100) == (100.0, 100.5)
    assert reserve_slot(100.5, 100.2, 50, 100) == (100.5, 101.0)  # after the previous batch
    assert reserve_slot(90.0, 100.0, 100, 100) == (100.0, 101.0)  # a timeline in the past restarts now
    assert reserve_slot(100.0 + STALE_AHEAD_S + 1, 100.0, 10, 10) == (100.0, 101.0)  # a skewed one too
    assert batch_limit(None, 1000) == 1000
    assert batch_limit(20, 1000) == 40 and batch_limit(0.2, 1000) == 1


@dataclass(frozen=True)
class M:
    user_id: str


def batches(count: int, size: int):
    members = [M(f"u{i:04d}") for i in range(count)]
    for start in range(0, count, size):
        yield members[start : start + size]


@given(st.integers(0, 60), st.integers(1, 9), st.lists(st.integers(0, 70), max_size=8), st.integers(1, 12))
def test_stream_take_after_cursor(count: int, size: int, jumps: list[int], limit: int) -> None:
    stream = MemberStream(batches(count, size))
    cursor = None
    taken: list[str] = []
    for jump in sorted(jumps):
        after = f"u{jump:04d}"
        if cursor is not None and after <= cursor:
            continue
        got, exhausted = stream.take(after, limit)
        expected = [f"u{i:04d}" for i in range(jump + 1, min(count, jump + 1 + limit))]
        assert [m.user_id for m in got] == expected
        assert exhausted == (jump + 1 + limit >= count)
        cursor = got[-1].user_id if got else after
        taken += [m.user_id for m in got]
    assert taken == sorted(set(taken))


def test_stream_prefetch_and_ranges() -> None:
    stream = MemberStream(batches(30, 4))
    stream.prefetch(10)
    assert [m.user_id for m in stream.take_range("u0003", "u0005")] == ["u0003", "u0004", "u0005"]
    assert [m.user_id for m in stream.take_range("u0010", "u0011")] == ["u0010", "u0011"]
    got, exhausted = stream.take("u0025", 100)
    assert [m.user_id for m in got] == ["u0026", "u0027", "u0028", "u0029"] and exhausted
    assert stream.take(None, 5) == ([], True)
