"""Gateway replies are read bounded (issue 10 item 7), through the real ``campaigns run --once``
against a local gateway (pytest-httpserver), on SQLite and PostgreSQL.

A reply that is too big (declared or streamed), or nests 100,000 levels deep, says nothing about
what was delivered: it is an unknown result, so the batch goes again with the same ids and no
message is counted as sent on its strength. Before, the deep reply raised RecursionError out of
the provider and the big one was read whole into memory.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_runner import campaigns
from delivery_gateway import TOKEN, TOKEN_ENV, Gateway, gateway_platform, seed_users_and_task
from pytest_httpserver import HTTPServer
from werkzeug import Response

from engine.delivery.ledger import Ledger
from engine.delivery.providers.gateway import REPLY_MAX_BYTES
from engine.delivery.report import task_report
from engine.state import StateStore

NOW = "2026-12-01T09:30:00+08:00"
USERS = 30  # two requests of 20 and 10
DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    try:
        yield Gateway(server)
    finally:
        server.clear()
        server.stop()


@pytest.fixture
def store(state_url: str, tmp_path: Path) -> Iterator[StateStore]:
    store = StateStore.open(state_url, tmp_path)
    yield store
    store.close()


def run_once(tmp_path: Path, state_url: str) -> None:
    result = campaigns("run", "--once", "--now", NOW, "--state", state_url, "--repo", str(tmp_path), "--log", "json")
    assert result.code == 0, result.err
    assert "Traceback" not in result.err and "RecursionError" not in result.err


def deep_reply() -> Response:
    return Response(DEEP, content_type="application/json")


def big_reply(messages: list[dict]) -> Response:
    """Every message reported sent, padded past the cap: a reply that must not be believed."""
    rows = [{"messageId": m["messageId"], "success": True, "retry": False} for m in messages]
    return Response(json.dumps({"result": {"resultStatus": "S", "resultCode": "SUCCESS"}, "messageSendResults": rows, "pad": "x" * (REPLY_MAX_BYTES + 1)}), content_type="application/json")


def streamed_big_reply(messages: list[dict]) -> Response:
    """The same, streamed in chunks without a Content-Length: the cap holds while reading."""
    rows = json.dumps([{"messageId": m["messageId"], "success": True, "retry": False} for m in messages])

    def chunks() -> Iterator[bytes]:
        yield b'{"result": {"resultStatus": "S"}, "messageSendResults": ' + rows.encode() + b', "pad": "'
        for _ in range(4 * REPLY_MAX_BYTES // 65536):
            yield b"x" * 65536
        yield b'"}'

    return Response(chunks(), content_type="application/json")


def bad_gzip_reply() -> Response:
    """A reply that says it is gzip and is not: it cannot be decoded, so it says nothing."""
    return Response(b"not gzip at all", content_type="application/json", headers={"Content-Encoding": "gzip"})


def gzip_bomb_reply(messages: list[dict]) -> Response:
    """A few KB on the wire that inflate to 64 MiB: the cap counts what is decoded."""
    rows = json.dumps([{"messageId": m["messageId"], "success": True, "retry": False} for m in messages])
    document = b'{"result": {"resultStatus": "S"}, "messageSendResults": ' + rows.encode() + b', "pad": "' + b" " * (64 * REPLY_MAX_BYTES) + b'"}'
    return Response(gzip.compress(document), content_type="application/json", headers={"Content-Encoding": "gzip"})


def assert_each_user_sent_once_with_one_id(gateway: Gateway, users: list[str], store: StateStore) -> None:
    ids = gateway.ids_by_customer()
    assert set(ids) == set(users) and all(len(found) == 1 for found in ids.values())
    assert task_report(store, "t1").totals["sent"] == len(users)


@pytest.mark.parametrize(
    "bad_reply",
    [lambda m: deep_reply(), big_reply, streamed_big_reply, gzip_bomb_reply, lambda m: bad_gzip_reply()],
    ids=["deep", "big", "streamed-big", "gzip-bomb", "bad-gzip"],
)
def test_a_hostile_gateway_reply_is_an_unknown_result_retried_with_the_same_ids(store, state_url, tmp_path, gateway, bad_reply):
    users = seed_users_and_task(store, tmp_path, USERS, gateway_platform(gateway))
    gateway.reply = lambda messages, number: bad_reply(messages) if number == 1 else gateway.ok(messages)
    run_once(tmp_path, state_url)
    assert_each_user_sent_once_with_one_id(gateway, users, store)
    rows = {row["user_id"]: row for row in Ledger(store).rows("t1", "once")}
    again = {user for user, row in rows.items() if row["attempts"] == 2}
    # the first request's batch (20 or 10 users: requests are in flight together) again, same ids
    assert len(again) in (10, 20) and len(gateway.received) == USERS + len(again)
    assert all(rows[user]["status"] == "sent" for user in again)


@pytest.mark.parametrize(
    "bad_reply,error",
    [
        (lambda m: deep_reply(), "sent an unreadable reply (the reply nests 100,000 levels deep; at most 100 are accepted)"),
        (big_reply, f"bytes; at most {REPLY_MAX_BYTES:,} are read"),
        (streamed_big_reply, f"sent a reply over {REPLY_MAX_BYTES:,} bytes"),
    ],
    ids=["deep", "big", "streamed-big"],
)
def test_a_gateway_that_only_sends_hostile_replies_gets_no_message_counted_as_sent(store, state_url, tmp_path, gateway, bad_reply, error):
    seed_users_and_task(store, tmp_path, USERS, gateway_platform(gateway, max_attempts=2))
    gateway.reply = lambda messages, number: bad_reply(messages)
    run_once(tmp_path, state_url)
    rows = Ledger(store).rows("t1", "once")
    assert len(rows) == USERS and not any(row["status"] == "sent" for row in rows)
    # never sent; not failed for good either: kept pending (provider-unavailable, the last error
    # on one line) for a later pass to send again with the same ids
    assert all(row["status"] == "pending" and row["reason"] == "provider-unavailable" for row in rows)
    assert all(error in row["error"] and "\n" not in row["error"] for row in rows)
    assert task_report(store, "t1").totals["sent"] == 0
