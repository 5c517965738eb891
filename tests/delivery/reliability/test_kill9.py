"""kill -9 during a fan-out: ``campaigns run --once`` over 20,000 users against a real local
gateway, SIGKILLed at random moments several times, then left to finish. At the gateway every
user has exactly one message id for the occurrence (the same id may arrive twice), and nobody
is missing. On SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from delivery_gateway import Gateway, gateway_platform, seed_users_and_task, wait_for

from engine.delivery.ids import message_id
from engine.delivery.ledger import Ledger
from engine.state import StateStore

USERS = 20_000
NOW = "2026-12-01T09:30:00+08:00"


def start(state_url: str, folder: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "engine", "run", "--once", "--now", NOW, "--state", state_url, "--repo", str(folder), "--log", "json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ},
    )


@pytest.mark.slow
def test_kill_9_loses_nothing_and_never_gives_a_user_two_ids(state_url: str, tmp_path: Path, gateway: Gateway) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    store = StateStore.open(state_url, tmp_path)
    try:
        users = seed_users_and_task(store, tmp_path, USERS, gateway_platform(gateway, batch_size=400))
    finally:
        store.close()

    def slow_ok(messages, number):
        time.sleep(0.002)  # a gateway takes a moment: the fan-out lasts a few seconds
        return gateway.ok(messages)

    gateway.reply = slow_ok
    kills_while_sending = 0
    for attempt in range(5):
        before = len(gateway.received)
        process = start(state_url, tmp_path)
        try:
            if attempt == 0:
                time.sleep(rng.uniform(0.05, 0.6))  # anywhere, startup included
            else:
                wait_for(lambda: len(gateway.received) > before or process.poll() is not None, timeout=60)
                time.sleep(rng.uniform(0.0, 0.4))
            if process.poll() is None:
                sending = len(gateway.received) > before
                process.send_signal(signal.SIGKILL)
                kills_while_sending += sending
        finally:
            process.wait(timeout=30)
    assert kills_while_sending >= 3, f"seed {seed}: the fan-out ended before it could be killed"

    final = start(state_url, tmp_path)
    assert final.wait(timeout=180) == 0, f"seed {seed}"

    ids = gateway.ids_by_customer()
    missing = set(users) - set(ids)
    assert not missing, f"seed {seed}: {len(missing)} users never received anything"
    doubled = {user: found for user, found in ids.items() if len(found) != 1}
    assert not doubled, f"seed {seed}: users with two different ids: {list(doubled.items())[:3]}"
    assert len(gateway.received) >= USERS  # re-sends of the same id are allowed
    print(f"seed {seed}: {len(gateway.received) - USERS} re-sends of a recorded id after {kills_while_sending} kills")

    store = StateStore.open(state_url, tmp_path)
    try:
        rows = Ledger(store).rows("t1", "once")
        assert len(rows) == USERS and {row["status"] for row in rows} == {"sent"}
        assert all(ids[row["user_id"]] == {row["message_id"]} for row in rows)
        assert all(row["message_id"] == message_id("t1", "once", row["user_id"]) for row in rows[:100])
        progress = Ledger(store).progress()[("t1", "once")]
        assert progress.status == "closed" and progress.counts.sent == USERS
    finally:
        store.close()
