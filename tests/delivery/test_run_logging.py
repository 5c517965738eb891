"""``campaigns run`` says what it is doing, on SQLite and PostgreSQL: a start-up line (the state
without its password, the executor id, the provider of each channel, the running tasks), one
summary per occurrence naming task and occurrence, JSON lines with ISO 8601 times off a terminal."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from cli_runner import campaigns
from delivery_state import import_users, platform_body, seed, task_body, write_users

from engine.state import StateStore

TOKEN_ENV = "CAMPAIGNS_TEST_LOG_TOKEN"


def with_password(url: str) -> str:
    """The same state with a password in its URL (the test server trusts everyone, so it is ignored)."""
    return url.replace("postgresql://postgres@", "postgresql://postgres:s3cret-pw@", 1)


@pytest.fixture
def repo(state_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    monkeypatch.setenv(TOKEN_ENV, "token")
    write_users(tmp_path / "users.csv", 25)
    store = StateStore.open(state_url, tmp_path)
    try:
        import_users(store, tmp_path / "users.csv")
        providers = {
            "default": {"type": "outbox", "path": str(tmp_path / "outbox")},
            "sms": {"type": "gateway", "url": "http://127.0.0.1:9/send", "token_env": TOKEN_ENV},
        }
        tasks = {"t1": task_body(), "t2": task_body(), "t3": task_body()}
        seed(store, platform=platform_body(providers=providers), tasks=tasks, statuses={"t3": "paused"})
    finally:
        store.close()
    return with_password(state_url), tmp_path


def events(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines()]


def test_the_start_up_line_says_what_the_executor_works_with(repo, state_backend: str) -> None:
    url, folder = repo
    result = campaigns("run", "--once", "--now", "2026-12-01T08:00:00+08:00", "--state", url, "--repo", str(folder))
    assert result.code == 0, result.err
    assert result.out.strip() == "Nothing due."
    [start] = events(result.err)
    assert (start["event"], start["level"], start["mode"]) == ("start", "info", "once")
    assert "s3cret-pw" not in result.err  # never the password
    if state_backend == "postgresql":
        assert start["state"].startswith("postgresql") and "***" in start["state"]
    else:
        assert start["state"] == url
    assert re.fullmatch(r"[0-9a-f]{32}", start["executor"])
    assert start["providers"]["push"] == f"outbox {folder / 'outbox'}"
    assert start["providers"]["sms"] == "gateway http://127.0.0.1:9/send"
    assert start["running_tasks"] == ["t1", "t2"]  # not the paused t3
    assert start["now"] == "2026-12-01T08:00:00+08:00"
    assert start["executor"] in start["message"] and "running tasks: t1, t2" in start["message"]
    assert dt.datetime.fromisoformat(start["time"]).utcoffset() == dt.timedelta(0)


def test_each_occurrence_summary_names_task_and_occurrence(repo) -> None:
    url, folder = repo
    result = campaigns("run", "--once", "--now", "2026-12-01T12:00:00+08:00", "--state", url, "--repo", str(folder))
    assert result.code == 0, result.err
    # the window closed before anyone ran: which users of which occurrence expired is said
    assert result.out.splitlines() == [
        "task t1 occurrence once: 25 expired.",
        "task t2 occurrence once: 25 expired.",
        "2 occurrences: 50 expired.",
    ]
    found = [e for e in events(result.err) if e["event"] == "occurrence"]
    assert [(e["task"], e["occurrence"], e["expired"], e["message"]) for e in found] == [
        ("t1", "once", 25, "task t1 occurrence once: 25 expired."),
        ("t2", "once", 25, "task t2 occurrence once: 25 expired."),
    ]
    for event in events(result.err):
        assert list(event)[:3] == ["time", "level", "event"] and event["time"].endswith("Z")


def test_a_provider_that_cannot_open_is_an_error_line(repo, monkeypatch: pytest.MonkeyPatch) -> None:
    url, folder = repo
    monkeypatch.delenv(TOKEN_ENV)
    store = StateStore.open(url, folder)
    try:
        seed(store, platform=platform_body(providers={"sms": {"type": "gateway", "url": "http://127.0.0.1:9/send", "token_env": TOKEN_ENV}}),
             tasks={"t1": task_body(channel="sms", creatives=["cr-s"])},
             creatives={"cr-s": {"name": "S", "template": "tpl-sms", "title": "Hi", "content": "Hello"}})
    finally:
        store.close()
    result = campaigns("run", "--once", "--now", "2026-12-01T09:30:00+08:00", "--state", url, "--repo", str(folder))
    assert result.code == 1
    lines = events(result.err)  # off a terminal, the final error is a JSON line too
    assert lines[0]["providers"]["sms"].startswith("misconfigured: ") and TOKEN_ENV in lines[0]["providers"]["sms"]
    errors = [e for e in lines if e["event"] == "error"]
    assert [e["level"] for e in errors] == ["error", "error"]
    assert "could not be delivered" in errors[-1]["message"]
