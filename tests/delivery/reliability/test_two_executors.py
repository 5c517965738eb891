"""Two executor processes on one state share an occurrence: each sends part of it, and no
message reaches the gateway twice. PostgreSQL hands out batches under row locks; on SQLite the
same protocol runs with the writers serialised."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from delivery_gateway import Gateway, gateway_platform, seed_users_and_task

from engine.delivery.report import task_report
from engine.state import StateStore

NOW = "2026-12-01T09:30:00+08:00"
USERS = 6000


@pytest.mark.slow
def test_two_executors_share_one_occurrence_without_duplicates(state_url: str, tmp_path: Path, gateway: Gateway) -> None:
    store = StateStore.open(state_url, tmp_path)
    try:
        users = seed_users_and_task(store, tmp_path, USERS, gateway_platform(gateway, batch_size=100))
    finally:
        store.close()

    def slow_ok(messages, number):
        time.sleep(0.003)
        return gateway.ok(messages)

    gateway.reply = slow_ok
    command = [sys.executable, "-m", "engine", "run", "--once", "--now", NOW, "--state", state_url, "--repo", str(tmp_path), "--log", "json"]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ}) for _ in range(2)]
    outputs = [process.communicate(timeout=180) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], [err[-2000:] for _out, err in outputs]

    sent_by: Counter[str] = Counter()
    for _out, err in outputs:
        for line in err.splitlines():
            event = json.loads(line)
            if event.get("event") == "batch":
                sent_by[event["executor"]] += event["sent"]
    assert len(sent_by) == 2 and all(count > 0 for count in sent_by.values()), sent_by
    assert sum(sent_by.values()) == USERS

    arrivals = Counter(message_id for message_id, _customer in gateway.received)
    assert len(arrivals) == USERS and set(arrivals.values()) == {1}  # no message twice
    ids = gateway.ids_by_customer()
    assert set(ids) == set(users) and all(len(found) == 1 for found in ids.values())
    store = StateStore.open(state_url, tmp_path)
    try:
        report = task_report(store, "t1")
        assert report.occurrences[0].state == "closed" and report.totals["sent"] == USERS
    finally:
        store.close()
