"""Fixtures of the delivery reliability tests (helpers in tests/helpers/delivery_gateway.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from delivery_gateway import TOKEN, TOKEN_ENV, Gateway
from pytest_httpserver import HTTPServer


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


