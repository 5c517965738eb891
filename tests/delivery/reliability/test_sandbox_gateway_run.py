"""``campaigns run --once`` against the sandbox of the wallet's message API
(tests/helpers/sandbox_gateway.py), on SQLite and PostgreSQL: signed requests and verified
replies configured in platform.yaml, the retry matrix as the ledger and ``report`` see it, the
rate held with requests in flight together, and kill -9 of an executor with ``concurrency``
requests in flight (nothing lost, no user given two different ids)."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_runner import campaigns
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from delivery_gateway import seed_users_and_task, wait_for
from delivery_state import platform_body
from sandbox_gateway import SandboxGateway

from engine.apply.emergency import pause
from engine.clock import Clock
from engine.delivery.executor import Executor
from engine.delivery.ledger import Ledger
from engine.delivery.report import task_report
from engine.state import StateStore

NOW = "2026-12-01T09:30:00+08:00"
TOKEN_ENV = "CAMPAIGNS_TEST_SANDBOX_TOKEN"
KEY_ENV = "CAMPAIGNS_TEST_PARTNER_KEY"
WALLET_ENV = "CAMPAIGNS_TEST_WALLET_PUBLIC_KEY"
CLIENT_ID = "2022091920220919"


def key_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


PARTNER = key_pair()
WALLET = key_pair()


@pytest.fixture
def state(state_url: str, tmp_path: Path) -> Iterator[tuple[StateStore, str]]:
    store = StateStore.open(state_url, tmp_path)
    yield store, state_url
    store.close()


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxGateway]:
    monkeypatch.setenv(KEY_ENV, PARTNER[0])
    monkeypatch.setenv(WALLET_ENV, WALLET[1])
    with SandboxGateway(client_id=CLIENT_ID, client_public_key=PARTNER[1], wallet_private_key=WALLET[0]) as server:
        yield server


def signed_platform(sandbox: SandboxGateway, *, rates: dict[str, int] | None = None, concurrency: int = 8, batch_size: int = 500, **gateway) -> dict:
    provider = {
        "type": "gateway",
        "url": sandbox.url,
        "client_id": CLIENT_ID,
        "private_key_env": KEY_ENV,
        "key_version": 2,
        "wallet_public_key_env": WALLET_ENV,
        "concurrency": concurrency,
        "timeout": 2.0,
        **gateway,
    }
    return platform_body(providers={"push": provider}, batch_size=batch_size, rates=rates)


def run_once(url: str, folder: Path) -> None:
    result = campaigns("run", "--once", "--now", NOW, "--state", url, "--repo", str(folder), "--log", "json")
    assert result.code == 0, result.err


def report(url: str, folder: Path) -> dict:
    result = campaigns("report", "t1", "--format", "json", "--state", url, "--repo", str(folder), "--now", NOW)
    assert result.code == 0, result.err
    return json.loads(result.out)


def assert_exactly_once(sandbox: SandboxGateway, users: list[str], store: StateStore, *, others: bool = False) -> None:
    """Each of ``users`` got exactly one id (and, unless ``others``, nobody else got anything)."""
    ids = sandbox.customers()
    assert set(users) <= set(ids), f"{len(set(users) - set(ids))} users never received anything"
    assert others or set(ids) == set(users)
    assert all(len(found) == 1 for found in ids.values()), "a user got two different ids"
    assert not sandbox.conflicts
    rows = Ledger(store).rows("t1", "once")
    assert all(ids[row["user_id"]] == {row["message_id"]} for row in rows if row["status"] == "sent")


def test_a_signed_fan_out_reaches_everyone_once(state, tmp_path: Path, sandbox: SandboxGateway) -> None:
    store, url = state
    users = seed_users_and_task(store, tmp_path, 300, signed_platform(sandbox))
    run_once(url, tmp_path)
    assert_exactly_once(sandbox, users, store)
    assert sandbox.stats.signatures_checked == 15
    assert report(url, tmp_path)["occurrences"][0]["sent"] == 300


def test_the_retry_matrix_through_the_executor(state, tmp_path: Path, sandbox: SandboxGateway) -> None:
    store, url = state
    users = seed_users_and_task(store, tmp_path, 200, signed_platform(sandbox, concurrency=1))
    sandbox.script = ["U", "bad-signature", "http:503", "F:REQUEST_TRAFFIC_EXCEED_LIMIT", "close", "drop", "F:ACCESS_DENIED"]
    sandbox.fail = {users[150]: "reject", users[151]: "retry:2"}
    run_once(url, tmp_path)
    rows = {row["user_id"]: row for row in Ledger(store).rows("t1", "once")}
    failed = {user for user, row in rows.items() if row["status"] == "failed"}
    # F ACCESS_DENIED refused a whole request (one batch of 20), retry=false one more user
    assert len(failed) == 21 and users[150] in failed
    assert all(rows[user]["reason"] == "provider-rejected" for user in failed)
    denied = [rows[user] for user in failed if user != users[150]]
    assert all("ACCESS_DENIED" in row["error"] for row in denied)
    assert "USER_NOT_EXIST" in rows[users[150]]["error"]
    assert {row["status"] for user, row in rows.items() if user not in failed} == {"sent"}
    assert rows[users[151]]["attempts"] == 3
    # (a request whose reply did not verify may have reached the wallet before a resend was refused)
    assert_exactly_once(sandbox, [u for u in users if u not in failed], store, others=True)
    summary = report(url, tmp_path)["occurrences"][0]
    assert summary["sent"] == 179 and summary["failed_by_reason"] == {"provider-rejected": 21}


def test_a_wallet_that_signs_with_another_key_gets_nothing_counted_as_sent(state, tmp_path: Path, sandbox: SandboxGateway, monkeypatch) -> None:
    store, url = state
    monkeypatch.setenv(WALLET_ENV, key_pair()[1])
    seed_users_and_task(store, tmp_path, 40, signed_platform(sandbox, max_attempts=2))
    run_once(url, tmp_path)
    rows = Ledger(store).rows("t1", "once")
    assert not any(row["status"] == "sent" for row in rows)
    assert all(row["status"] == "pending" and row["reason"] == "provider-unavailable" for row in rows)  # retried later
    assert len(sandbox.delivered) == 40  # the wallet had them: the same ids will be resent, not new ones


def test_concurrent_requests_still_hold_the_rate(state, tmp_path: Path, sandbox: SandboxGateway) -> None:
    store, url = state
    sandbox.latency = 0.05
    users = seed_users_and_task(store, tmp_path, 600, signed_platform(sandbox, rates={"push": 400}))
    started = time.monotonic()
    run_once(url, tmp_path)
    elapsed = time.monotonic() - started
    assert_exactly_once(sandbox, users, store)
    assert elapsed >= 1.3, elapsed  # 600 at 400/s; the first burst is free
    assert sandbox.stats.max_in_flight >= 2  # at 50 ms a request, 400/s needs requests side by side


def test_a_missing_key_variable_is_one_clear_line(state, tmp_path: Path, sandbox: SandboxGateway, monkeypatch) -> None:
    store, url = state
    monkeypatch.delenv(KEY_ENV)
    seed_users_and_task(store, tmp_path, 5, signed_platform(sandbox))
    result = campaigns("run", "--once", "--now", NOW, "--state", url, "--repo", str(tmp_path), "--log", "json")
    assert KEY_ENV in result.err and "is not set" in result.err and "Traceback" not in result.err
    assert not sandbox.delivered


# --- kill -9 with requests in flight ------------------------------------------------------------


def start(url: str, folder: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "engine", "run", "--once", "--now", NOW, "--state", url, "--repo", str(folder), "--log", "json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ},
    )


@pytest.mark.slow
def test_kill_9_with_concurrent_requests_in_flight_loses_nothing_and_gives_no_user_two_ids(
    state, tmp_path: Path, sandbox: SandboxGateway
) -> None:
    store, url = state
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    users = seed_users_and_task(store, tmp_path, 6000, signed_platform(sandbox, concurrency=16, batch_size=400))
    sandbox.latency = 0.03  # 16 requests of 20 in flight: about 10,000 msg/s at most, the fan-out lasts a while
    kills_in_flight = 0
    for _attempt in range(8):  # stop after two kills landed mid-request (or eight tries)
        if kills_in_flight >= 2:
            break
        before = sandbox.stats.requests
        process = start(url, tmp_path)
        try:
            wait_for(lambda: sandbox.stats.requests > before or process.poll() is not None, timeout=60)
            time.sleep(rng.uniform(0.0, 0.3))
            # Aim the kill at a moment with requests open (between rounds the executor writes the
            # ledger and nothing is in flight); a random delay alone sometimes missed them all.
            wait_for(lambda: sandbox.stats.in_flight > 0 or process.poll() is not None, timeout=10)
            if process.poll() is None:
                kills_in_flight += sandbox.stats.in_flight > 0
                process.send_signal(signal.SIGKILL)
        finally:
            process.wait(timeout=30)
    assert kills_in_flight >= 2, f"seed {seed}: too few kills landed while requests were in flight"
    final = start(url, tmp_path)
    assert final.wait(timeout=180) == 0, f"seed {seed}"
    assert_exactly_once(sandbox, users, store)
    rows = Ledger(store).rows("t1", "once")
    assert len(rows) == len(users) and {row["status"] for row in rows} == {"sent"}, f"seed {seed}"
    repeats = sandbox.stats.messages - len(users)
    print(f"seed {seed}: {kills_in_flight} kills with requests in flight, {repeats} re-sends of a recorded id")


def test_a_pause_during_a_provider_call_stops_its_requests_not_posted_yet(state, tmp_path: Path, sandbox: SandboxGateway) -> None:
    """One provider call carries 16 rounds of requests (2 x 20 x 16 = 640 messages, 0.8 s at
    50 ms a round trip): a `campaigns pause` in the middle of it is not left for its end."""
    store, url = state
    sandbox.latency = 0.05
    users = 2000
    seed_users_and_task(store, tmp_path, users, signed_platform(sandbox, concurrency=2, batch_size=users))
    finished: dict[str, object] = {}

    def run() -> None:
        with StateStore.open(url, tmp_path) as own, Executor(own, tmp_path, clock=Clock(dt.datetime.fromisoformat(NOW))) as executor:
            finished["summary"] = executor.run_pass()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_for(lambda: sandbox.stats.requests >= 4)
        with StateStore.open(url, tmp_path) as other:
            pause(other, ["t1"], reason="wrong price in the title", by="alice")
        paused_at = time.monotonic()
    finally:
        thread.join(60)
    late = [arrival - paused_at for arrival in sandbox.arrivals if arrival > paused_at + 0.5]
    assert not late, f"{len(late)} requests posted more than 0.5 s after the pause"
    delivered = sandbox.delivered_count
    assert 0 < delivered < users
    totals = task_report(store, "t1").totals
    assert totals["sent"] == delivered and totals["pending"] == users - delivered  # the rest waits for a resume
