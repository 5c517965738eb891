"""For the delivery reliability tests: a real local HTTP gateway that records every message it
receives, and states seeded with users and one running push task delivered through it."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from delivery_state import import_users, platform_body, seed, task_body, write_users
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

TOKEN_ENV = "CAMPAIGNS_TEST_GATEWAY_TOKEN"
TOKEN = "reliability-token"


class Gateway:
    """Records ``(messageId, customerId)`` of every message received; answers with ``reply``
    (default: every message sent). ``reply(messages, request_number)`` may sleep or fail."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.url = server.url_for("/send")
        self.received: list[tuple[str, str]] = []
        self.requests = 0
        self.lock = threading.Lock()
        self.reply: Callable[[list[dict], int], Response] = lambda messages, number: self.ok(messages)
        server.expect_request("/send", method="POST").respond_with_handler(self._handle)

    def _handle(self, request: Request) -> Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return Response("no token", status=401)
        messages = json.loads(request.get_data())["messages"]
        with self.lock:
            self.requests += 1
            number = self.requests
            self.received.extend((m["messageId"], m["customerId"]) for m in messages)
        return self.reply(messages, number)

    @staticmethod
    def results(rows: list[dict]) -> Response:
        return Response(json.dumps({"result": {"resultStatus": "S", "resultCode": "SUCCESS"}, "messageSendResults": rows}), content_type="application/json")

    @classmethod
    def ok(cls, messages: list[dict]) -> Response:
        return cls.results([{"messageId": m["messageId"], "success": True, "retry": False} for m in messages])

    def ids_by_customer(self) -> dict[str, set[str]]:
        found: dict[str, set[str]] = defaultdict(set)
        with self.lock:
            for message_id, customer in self.received:
                found[customer].add(message_id)
        return found


def gateway_platform(gateway: Gateway, *, timeout: float = 5.0, max_attempts: int = 5, batch_size: int = 500, **extra: Any) -> dict:
    return platform_body(
        providers={"push": {"type": "gateway", "url": gateway.url, "token_env": TOKEN_ENV, "timeout": timeout, "max_attempts": max_attempts}},
        batch_size=batch_size,
        **extra,
    )


def seed_users_and_task(store: Any, folder: Path, users: int, platform: dict, **task: Any) -> list[str]:
    """``users`` users in the directory and one running push task ``t1`` for all of them."""
    ids = write_users(folder / "users.csv", users)
    import_users(store, folder / "users.csv")
    seed(store, platform=platform, tasks={"t1": task_body(**task)})
    return ids


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)
