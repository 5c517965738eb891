"""``campaigns run --once`` against a real local gateway that fails: 5xx twice then fine,
per-message refusals, retry requests, and answers slower than the timeout."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cli_runner import campaigns
from delivery_gateway import Gateway, gateway_platform, seed_users_and_task
from werkzeug import Response

from engine.delivery.ledger import Ledger
from engine.delivery.report import task_report
from engine.state import StateStore

NOW = "2026-12-01T09:30:00+08:00"


@pytest.fixture
def store(tmp_path: Path):
    store = StateStore.open(f"sqlite:///{tmp_path}/state.db", tmp_path)
    yield store
    store.close()


def run_once(tmp_path: Path) -> None:
    result = campaigns("run", "--once", "--now", NOW, "--state", f"sqlite:///{tmp_path}/state.db", "--repo", str(tmp_path), "--log", "json")
    assert result.code == 0, result.err


def test_500_twice_then_200_delivers_everything(store: StateStore, tmp_path: Path, gateway: Gateway) -> None:
    users = seed_users_and_task(store, tmp_path, 50, gateway_platform(gateway))
    gateway.reply = lambda messages, number: Response("busy", status=500) if number <= 2 else gateway.ok(messages)
    run_once(tmp_path)
    ids = gateway.ids_by_customer()
    assert set(ids) == set(users) and all(len(found) == 1 for found in ids.values())
    assert gateway.requests == 2 + 3  # two refused requests, then 50 messages in requests of 20
    assert task_report(store, "t1").totals["sent"] == 50


def test_retry_false_is_failed_and_retry_true_is_retried(store: StateStore, tmp_path: Path, gateway: Gateway) -> None:
    users = seed_users_and_task(store, tmp_path, 40, gateway_platform(gateway))
    refused = {users[1], users[22]}
    asked_again = {users[5]}
    seen: set[str] = set()

    def reply(messages, number):
        rows = []
        for m in messages:
            if m["customerId"] == users[1]:
                rows.append({"messageId": m["messageId"], "success": False, "retry": False})
            elif m["customerId"] in refused:  # a gateway that says why
                rows.append({"messageId": m["messageId"], "success": False, "retry": False, "resultCode": "USER_NOT_FOUND"})
            elif m["customerId"] in asked_again and m["customerId"] not in seen:
                seen.add(m["customerId"])
                rows.append({"messageId": m["messageId"], "success": False, "retry": True})
            else:
                rows.append({"messageId": m["messageId"], "success": True, "retry": False})
        return gateway.results(rows)

    gateway.reply = reply
    run_once(tmp_path)
    rows = {row["user_id"]: row for row in Ledger(store).rows("t1", "once")}
    assert {user for user, row in rows.items() if row["status"] == "failed"} == refused
    assert all("retry=false" in rows[user]["error"] for user in refused)
    assert {rows[user]["reason"] for user in refused} == {"provider-rejected"}  # with the provider's code
    assert rows[users[1]]["error"].startswith("retry=false: ") and rows[users[22]]["error"].startswith("USER_NOT_FOUND: ")
    assert task_report(store, "t1").occurrences[0].failed_by_reason == {"provider-rejected": 2}
    assert rows[users[5]]["status"] == "sent" and rows[users[5]]["attempts"] == 2
    assert task_report(store, "t1").totals == {"sent": 38, "failed": 2, "expired": 0, "capped": 0, "suppressed": 0, "pending": 0, "unconfirmed": 0}
    run_once(tmp_path)  # failed is final: nothing is sent again
    assert sum(1 for _id, customer in gateway.received if customer in refused) == 2


def test_a_gateway_slower_than_the_timeout_is_retried(store: StateStore, tmp_path: Path, gateway: Gateway) -> None:
    users = seed_users_and_task(store, tmp_path, 30, gateway_platform(gateway, timeout=0.5))

    def reply(messages, number):
        if number == 1:
            time.sleep(1.5)  # over the 0.5 s timeout: the executor gives up on this answer
        return gateway.ok(messages)

    gateway.reply = reply
    run_once(tmp_path)
    ids = gateway.ids_by_customer()
    assert set(ids) == set(users) and all(len(found) == 1 for found in ids.values())
    first_batch = [customer for _id, customer in gateway.received[:20]]
    assert len(gateway.received) == 30 + 20  # the first 20 again, with the same ids
    rows = {row["user_id"]: row for row in Ledger(store).rows("t1", "once")}
    assert all(rows[user]["attempts"] == 2 and rows[user]["status"] == "sent" for user in first_batch)
    assert task_report(store, "t1").totals["sent"] == 30


def test_a_gateway_that_stays_down_is_given_up_on_after_the_bound_and_retried_later(
    store: StateStore, tmp_path: Path, gateway: Gateway
) -> None:
    seed_users_and_task(store, tmp_path, 5, gateway_platform(gateway, max_attempts=2))
    gateway.reply = lambda messages, number: Response("down", status=503)
    run_once(tmp_path)
    assert gateway.requests == 2  # max_attempts rounds, then this pass gives up...
    rows = Ledger(store).rows("t1", "once")
    # ... but not on the users: pending, with the reason and the last error, for a later pass
    assert {row["status"] for row in rows} == {"pending"} and "503" in rows[0]["error"]
    assert {row["reason"] for row in rows} == {"provider-unavailable"}
    assert task_report(store, "t1").occurrences[0].counts.failed == 0


def test_a_request_the_gateway_refuses_is_failed_with_its_http_code(store: StateStore, tmp_path: Path, gateway: Gateway) -> None:
    seed_users_and_task(store, tmp_path, 5, gateway_platform(gateway))
    gateway.reply = lambda messages, number: Response("bad customerId", status=400)
    run_once(tmp_path)
    rows = Ledger(store).rows("t1", "once")
    assert {(row["status"], row["reason"]) for row in rows} == {("failed", "provider-rejected")}
    assert rows[0]["error"].startswith("HTTP 400: ") and "bad customerId" in rows[0]["error"]
