"""Windows, through the real command: nothing before a window opens, nothing late after the last
one closes (the unreached are expired), and the part of a fan-out a closing window cuts off is
expired, not sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import campaigns
from delivery_gateway import Gateway, gateway_platform, seed_users_and_task

from engine.state import StateStore


@pytest.fixture
def state(state_url: str, tmp_path: Path):
    store = StateStore.open(state_url, tmp_path)
    yield store, state_url
    store.close()


def run_at(state_url: str, folder: Path, now: str) -> None:
    result = campaigns("run", "--once", "--now", now, "--state", state_url, "--repo", str(folder), "--log", "json")
    assert result.code == 0, result.err


def report(state_url: str, folder: Path, now: str) -> dict:
    result = campaigns("report", "t1", "--format", "json", "--now", now, "--state", state_url, "--repo", str(folder))
    assert result.code == 0, result.err
    return json.loads(result.out)


def test_a_run_at_0859_sends_nothing_when_the_window_opens_at_0900(state, tmp_path: Path, gateway: Gateway) -> None:
    store, url = state
    seed_users_and_task(store, tmp_path, 100, gateway_platform(gateway), windows=[("09:00", "11:30")])
    run_at(url, tmp_path, "2026-12-01T08:59:00+08:00")
    run_at(url, tmp_path, "2026-12-01T00:59:59Z")  # the same instant a second later, in UTC
    assert gateway.received == []
    assert report(url, tmp_path, "2026-12-01T00:59:59Z")["occurrences"] == []
    run_at(url, tmp_path, "2026-12-01T09:00:00+08:00")
    assert len(gateway.received) == 100


def test_a_run_after_the_last_window_expires_the_unreached(state, tmp_path: Path, gateway: Gateway) -> None:
    store, url = state
    seed_users_and_task(
        store, tmp_path, 100, gateway_platform(gateway), windows=[("09:00", "11:30"), ("18:00", "21:00")],
        recurrence={"type": "daily", "every": 1}, finish="2026-12-02",
    )
    run_at(url, tmp_path, "2026-12-01T21:00:00+08:00")  # the 1st's last window has just closed
    assert gateway.received == []
    found = report(url, tmp_path, "2026-12-01T21:00:00+08:00")
    assert [(o["occurrence"], o["state"], o["expired"], o["pending"]) for o in found["occurrences"]] == [
        ("2026-12-01", "closed", 100, 0)
    ]
    run_at(url, tmp_path, "2026-12-02T18:30:00+08:00")  # the next day's second window: on time
    assert len(gateway.received) == 100
    assert {o["occurrence"]: o["sent"] for o in report(url, tmp_path, "2026-12-02T18:30:00+08:00")["occurrences"]} == {"2026-12-01": 0, "2026-12-02": 100}
