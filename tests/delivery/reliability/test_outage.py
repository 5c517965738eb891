"""A gateway outage while the window is open, through ``campaigns run --once --now`` on SQLite and
PostgreSQL: the users the gateway could not take stay pending (``provider-unavailable``) and are
retried by later passes with backoff; only when the occurrence's last window closes are they
``expired``, with the reason kept. Nothing is failed for good while the window is open."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cli_runner import campaigns
from delivery_gateway import Gateway, gateway_platform, seed_users_and_task
from werkzeug import Response

from engine.delivery.ledger import Ledger
from engine.state import StateStore

USERS = 150


@pytest.fixture
def state(state_url: str, tmp_path: Path):
    store = StateStore.open(state_url, tmp_path)
    yield store, state_url
    store.close()


def run_at(url: str, folder: Path, now: str):
    result = campaigns("run", "--once", "--now", now, "--state", url, "--repo", str(folder), "--log", "json")
    assert result.code == 0, result.err
    return result


def report(url: str, folder: Path, *extra: str) -> dict:
    result = campaigns("report", "t1", "--format", "json", "--state", url, "--repo", str(folder), *extra)
    assert result.code == 0, result.err
    return json.loads(result.out)


def down_while(gateway: Gateway, flag: dict) -> None:
    def reply(messages, number):
        return Response("gateway restarting", status=503) if flag["down"] else gateway.ok(messages)

    gateway.reply = reply


def test_an_outage_is_retried_by_later_passes_until_the_gateway_is_back(state, tmp_path: Path, gateway: Gateway) -> None:
    store, url = state
    users = seed_users_and_task(store, tmp_path, USERS, gateway_platform(gateway, max_attempts=2))
    flag = {"down": True}
    down_while(gateway, flag)

    first = run_at(url, tmp_path, "2026-12-01T09:30:00+08:00")
    assert f"{USERS} waiting for the provider" in first.out and "failed" not in first.out
    during = gateway.requests
    assert during == 2  # one request per round: the gateway was struggling, the rest held back
    occurrence = report(url, tmp_path)["occurrences"][0]
    assert (occurrence["failed"], occurrence["pending"], occurrence["state"]) == (0, USERS, "fanned")
    rows = Ledger(store).rows("t1", "once")
    assert {row["status"] for row in rows} == {"pending"}
    assert {row["reason"] for row in rows} == {"provider-unavailable"}
    assert any("503" in row["error"] for row in rows)

    # ten seconds later: the backoff has not run out, nothing is posted, the pass says why
    early = run_at(url, tmp_path, "2026-12-01T09:30:10+08:00")
    assert gateway.requests == during
    assert f"{USERS} waiting for the provider (retried from 2026-12-01T01:30:" in early.out
    assert early.out.strip() != "Nothing due."

    flag["down"] = False  # the gateway is back
    run_at(url, tmp_path, "2026-12-01T09:31:00+08:00")
    ids = gateway.ids_by_customer()
    assert set(ids) == set(users) and all(len(found) == 1 for found in ids.values())
    occurrence = report(url, tmp_path)["occurrences"][0]
    assert (occurrence["sent"], occurrence["failed"], occurrence["pending"], occurrence["state"]) == (USERS, 0, 0, "closed")
    assert occurrence["failed_by_reason"] == {}
    assert Ledger(store).progress()[("t1", "once")].counts == Ledger(store).counted()[("t1", "once")]
    assert run_at(url, tmp_path, "2026-12-01T09:40:00+08:00").out.strip() == "Nothing due."


def test_the_backoff_doubles_between_passes(state, tmp_path: Path, gateway: Gateway) -> None:
    store, url = state
    seed_users_and_task(store, tmp_path, 30, gateway_platform(gateway, max_attempts=1))
    down_while(gateway, {"down": True})
    run_at(url, tmp_path, "2026-12-01T09:30:00+08:00")
    waits = []
    for moment in ("2026-12-01T09:31:00+08:00", "2026-12-01T09:33:00+08:00", "2026-12-01T09:40:00+08:00"):
        before = gateway.requests
        run_at(url, tmp_path, moment)
        assert gateway.requests == before + 1  # due again: retried (one request, the gateway still down)
        with store.reading() as conn:
            retry_at, retries = conn.exec_driver_sql("SELECT retry_at, retries FROM campaigns_delivery_claims").one()
        waits.append(retry_at - dt.datetime.fromisoformat(moment).timestamp())  # the clock ran on a little
    assert [round(wait / 10) * 10 for wait in waits] == [60, 120, 240] and retries == 4


def test_an_outage_past_the_window_expires_the_users_with_the_reason(state, tmp_path: Path, gateway: Gateway) -> None:
    store, url = state
    seed_users_and_task(store, tmp_path, USERS, gateway_platform(gateway, max_attempts=2))
    down_while(gateway, {"down": True})
    run_at(url, tmp_path, "2026-12-01T11:00:00+08:00")  # the window closes at 11:30
    run_at(url, tmp_path, "2026-12-01T11:20:00+08:00")
    closed = run_at(url, tmp_path, "2026-12-01T11:31:00+08:00")
    assert f"task t1 occurrence once: {USERS} expired." in closed.out
    occurrence = report(url, tmp_path)["occurrences"][0]
    assert (occurrence["expired"], occurrence["failed"], occurrence["pending"], occurrence["state"]) == (USERS, 0, 0, "closed")
    assert occurrence["expired_by_reason"] == {"provider-unavailable": USERS}
    rows = Ledger(store).rows("t1", "once")
    assert {row["status"] for row in rows} == {"expired"} and {row["reason"] for row in rows} == {"provider-unavailable"}
    assert all(row["error"].startswith("the provider could not take it until") for row in rows)
    assert all(row["cap_key"] is None for row in rows)  # never delivered: not counted against the cap
