"""kill -9 of ``campaigns run --once`` delivering through the outbox, on SQLite and PostgreSQL.

- Killed at random moments (some in the middle of an outbox write) and restarted inside the
  window: every outbox line parses (a torn line is cut off, never glued to the next message),
  every user has one message id, and the ledger agrees with the outbox.
- Killed mid-batch and restarted after the window closed: the users of the batch in hand are
  ``unconfirmed`` (never ``expired`` while the outbox holds their messages), reported apart, and
  counted against the daily cap of the site's later tasks that day.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_runner import campaigns
from delivery_gateway import wait_for
from delivery_state import creative_body, import_users, outbox_lines, platform_body, seed, task_body, template_body, write_users

from engine.delivery.ids import message_id
from engine.delivery.ledger import Ledger
from engine.state import StateStore


def start(state_url: str, folder: Path, now: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "engine", "run", "--once", "--now", now, "--state", state_url, "--repo", str(folder),
         "--log", "json", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ},
    )


def outbox_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


@pytest.mark.slow
def test_kill_9_at_random_moments_leaves_whole_lines_and_a_ledger_that_agrees(state_url: str, tmp_path: Path) -> None:
    seed_value = random.randrange(1 << 30)
    rng = random.Random(seed_value)
    users = write_users(tmp_path / "users.csv", 30_000)
    store = StateStore.open(state_url, tmp_path)
    try:
        import_users(store, tmp_path / "users.csv")
        long_text = "You have {{ user.points }} points. " + "Deals are half price until midnight. " * 40
        template = template_body("push")
        template["fields"]["content"]["max_length"] = 3000  # long lines: a batch's write() takes a while
        seed(store, platform=platform_body(outbox=tmp_path / "outbox", batch_size=10_000), tasks={"t1": task_body()},
             creatives={"cr-a": creative_body(content=long_text)}, templates={"tpl-push": template})
    finally:
        store.close()
    path = tmp_path / "outbox" / "push.jsonl"
    for attempt in range(6):
        process = start(state_url, tmp_path, "2026-12-01T09:30:00+08:00")
        try:
            if attempt % 2 == 0:  # at a random moment, start-up included
                time.sleep(rng.uniform(0.2, 2.5))
            else:  # the moment the outbox grows: inside a write() of a 10,000-message batch
                before = outbox_size(path)
                wait_for(lambda: outbox_size(path) != before or process.poll() is not None, timeout=120)
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
        finally:
            process.wait(timeout=30)
    final = start(state_url, tmp_path, "2026-12-01T09:30:00+08:00")
    assert final.wait(timeout=300) == 0, f"seed {seed_value}"

    raw = path.read_bytes()
    assert raw.endswith(b"\n"), f"seed {seed_value}"
    lines = [json.loads(line) for line in raw.split(b"\n")[:-1]]  # a glued line would not parse
    ids: dict[str, set[str]] = {}
    for line in lines:
        ids.setdefault(line["user_id"], set()).add(line["message_id"])
    assert set(ids) == set(users), f"seed {seed_value}"
    assert all(len(found) == 1 for found in ids.values()), f"seed {seed_value}: a user got two different ids"
    store = StateStore.open(state_url, tmp_path)
    try:
        rows = Ledger(store).rows("t1", "once")
        assert {row["status"] for row in rows} == {"sent"} and len(rows) == len(users)
        assert all(ids[row["user_id"]] == {row["message_id"]} for row in rows)
        assert Ledger(store).progress()[("t1", "once")].counts.sent == len(users)
    finally:
        store.close()
    torn = tmp_path / "outbox" / "push.jsonl.torn"
    cut = torn.read_bytes().count(b"\n") if torn.exists() else 0
    print(f"seed {seed_value}: {len(lines) - len(users)} re-sent lines; torn lines cut off: {cut}")


def test_killed_mid_batch_and_restarted_after_the_window_the_batch_is_unconfirmed(state_url: str, tmp_path: Path) -> None:
    users = write_users(tmp_path / "users.csv", 3000)
    outbox = tmp_path / "outbox"
    store = StateStore.open(state_url, tmp_path)
    try:
        import_users(store, tmp_path / "users.csv")
        platform = platform_body(outbox=outbox, batch_size=1000, rates={"push": 500}, cap=1)  # a batch lasts 2 s
        tasks = {"t1": task_body(), "t2": task_body(windows=[("18:00", "20:00")])}
        seed(store, platform=platform, tasks=tasks)
    finally:
        store.close()
    process = start(state_url, tmp_path, "2026-12-01T09:30:00+08:00", "--task", "t1")
    try:
        wait_for(lambda: len(outbox_lines(outbox)) >= 1200 or process.poll() is not None, timeout=120)
        process.send_signal(signal.SIGKILL)  # in the middle of the second batch
    finally:
        process.wait(timeout=30)
    in_outbox = {line["user_id"] for line in outbox_lines(outbox)}
    assert 1200 <= len(in_outbox) < 3000

    after = campaigns("run", "--once", "--now", "2026-12-01T11:31:00+08:00", "--task", "t1", "--state", state_url,
                      "--repo", str(tmp_path), "--log", "json")
    assert after.code == 0, after.err
    store = StateStore.open(state_url, tmp_path)
    try:
        rows = {row["user_id"]: row for row in Ledger(store).rows("t1", "once")}
    finally:
        store.close()
    status = {user: rows[user]["status"] for user in users}
    unconfirmed = {user for user, value in status.items() if value == "unconfirmed"}
    assert 0 < len(unconfirmed) <= 1000  # the batch in hand when it was killed
    assert {status[user] for user in in_outbox} <= {"sent", "unconfirmed"}  # never "expired" with a message out
    assert unconfirmed & in_outbox  # some of the batch had reached the outbox...
    assert all(rows[user]["message_id"] == message_id("t1", "once", user) for user in unconfirmed)
    assert f"{len(unconfirmed):,} unconfirmed" in after.out and "task t1 occurrence once" in after.out

    report = campaigns("report", "t1", "--format", "json", "--state", state_url, "--repo", str(tmp_path))
    occurrence = json.loads(report.out)["occurrences"][0]
    sent = sum(1 for value in status.values() if value == "sent")
    assert (occurrence["unconfirmed"], occurrence["sent"], occurrence["expired"]) == (len(unconfirmed), sent, 3000 - sent - len(unconfirmed))
    table = campaigns("report", "t1", "--state", state_url, "--repo", str(tmp_path)).out.splitlines()
    assert "UNCONFIRMED" in table[1].split()
    status_json = json.loads(
        campaigns("status", "--format", "json", "--now", "2026-12-01T11:31:00+08:00", "--state", state_url, "--repo", str(tmp_path)).out
    )
    assert {t["task"]: t["deliveries"] for t in status_json["tasks"]}["t1"]["unconfirmed"] == len(unconfirmed)

    # the daily cap of 1: whoever was sent or may have been sent today is capped for t2
    evening = campaigns("run", "--once", "--now", "2026-12-01T18:30:00+08:00", "--task", "t2", "--state", state_url,
                        "--repo", str(tmp_path), "--log", "json")
    assert evening.code == 0, evening.err
    store = StateStore.open(state_url, tmp_path)
    try:
        second = {row["user_id"]: row["status"] for row in Ledger(store).rows("t2", "once")}
    finally:
        store.close()
    assert {user for user, value in second.items() if value == "capped"} == {u for u, v in status.items() if v in ("sent", "unconfirmed")}
    assert {user for user, value in second.items() if value == "sent"} == {u for u, v in status.items() if v == "expired"}
