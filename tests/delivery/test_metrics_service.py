"""``campaigns run --metrics-addr``: Prometheus metrics and /healthz scraped while the service
fans out (one process and --workers 2), then stopped with SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cli_runner import campaigns
from delivery_state import SERVICE_NOW, import_users, outbox_lines, platform_body, seed, service_task, write_users
from prometheus_client.parser import text_string_to_metric_families

from engine.state import StateStore

USERS = 300


def _live_repo(tmp_path: Path) -> Path:
    """A task whose window is open now from SERVICE_NOW (the service runs on from it in real time), at 100/s."""
    write_users(tmp_path / "users.csv", USERS, opt_out={3: "push"})
    store = StateStore.open(f"sqlite:///{tmp_path}/.campaigns/state.db", tmp_path)
    try:
        import_users(store, tmp_path / "users.csv")
        task = service_task()
        seed(store, platform=platform_body(outbox=".campaigns/outbox", batch_size=20, rates={"push": 100}), tasks={"t1": task})
    finally:
        store.close()
    return tmp_path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None


@pytest.mark.parametrize("workers", ["1", "2"])
def test_metrics_and_health_during_a_fan_out_then_sigterm(tmp_path: Path, workers: str) -> None:
    repo = _live_repo(tmp_path)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    service = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", "--now", SERVICE_NOW, "--repo", str(repo), "--interval", "0.2", "--log", "json",
         "--metrics-addr", f"127.0.0.1:{port}", "--workers", workers],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ},
    )
    outbox = repo / ".campaigns" / "outbox"
    try:
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline:  # during the fan-out (three seconds at 100/s)
            health = _get(f"{base}/healthz")
            if health is not None and health.status_code == 200 and len(outbox_lines(outbox)) >= 20:
                break
            time.sleep(0.05)
        assert health is not None and health.status_code == 200, health and health.text
        during = _samples(httpx.get(f"{base}/metrics", timeout=5).text)
        assert len(outbox_lines(outbox)) < USERS  # the scrape happened during the fan-out
        assert 0 < _value(during, "campaigns_occurrence_pending", task="t1", occurrence="once") < USERS
        assert _value(during, "campaigns_messages_total", task="t1", channel="push", status="sent") > 0
        while len(outbox_lines(outbox)) < USERS - 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.6)  # the last batch is counted, and a pass or two after it
        after = _samples(httpx.get(f"{base}/metrics", timeout=5).text)
        service.send_signal(signal.SIGTERM)
        _out, err = service.communicate(timeout=30)
    finally:
        if service.poll() is None:
            service.kill()
    assert service.returncode == 0, err
    sent = len(outbox_lines(outbox))
    assert sent == USERS - 1  # one user opted out
    assert _value(after, "campaigns_messages_total", task="t1", channel="push", status="sent") == sent
    assert _value(after, "campaigns_messages_total", task="t1", channel="push", status="suppressed") == 1
    assert _value(after, "campaigns_provider_request_seconds_count", channel="push", outcome="ok") > 0
    assert _value(after, "campaigns_executor_behind") == 0
    assert abs(_value(after, "campaigns_last_pass_timestamp_seconds") - time.time()) < 60
    assert _get(f"{base}/healthz") is None  # stopped: nothing listens any more
    lines = [json.loads(line) for line in err.splitlines()]  # off a terminal: JSON from the first line on
    assert lines[0]["event"] == "metrics" and lines[0]["address"] == f"127.0.0.1:{port}"
    if workers == "1":
        assert any(line["event"] == "stopping" and line["signal"] == "SIGTERM" for line in lines)


def test_health_is_503_when_the_state_is_gone(tmp_path: Path) -> None:
    repo = _live_repo(tmp_path)
    port = _free_port()
    service = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", "--now", SERVICE_NOW, "--repo", str(repo), "--interval", "0.2", "--log", "json",
         "--metrics-addr", f"127.0.0.1:{port}", "--task", "t1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while (answer := _get(f"http://127.0.0.1:{port}/healthz")) is None or answer.status_code != 200:
            assert time.monotonic() < deadline and service.poll() is None, service.stderr and service.stderr.read()
            time.sleep(0.05)
        database = repo / ".campaigns" / "state.db"
        database.rename(repo / "elsewhere.db")
        (repo / ".campaigns").chmod(0o500)  # nor can it be created again
        try:
            answer = _get(f"http://127.0.0.1:{port}/healthz")
        finally:
            (repo / ".campaigns").chmod(0o700)
        assert answer is not None and answer.status_code == 503
        assert "state" in answer.text
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.communicate(timeout=30)
        finally:
            if service.poll() is None:
                service.kill()


def test_bad_metrics_addresses_are_one_line_errors(tmp_path: Path) -> None:
    repo = _live_repo(tmp_path)
    result = campaigns("run", "--repo", str(repo), "--metrics-addr", "nowhere")
    assert result.code != 0 and "HOST:PORT" in result.err and "Traceback" not in result.err
    result = campaigns("run", "--once", "--repo", str(repo), "--metrics-addr", "127.0.0.1:0")
    assert result.code != 0 and "--once" in result.err
