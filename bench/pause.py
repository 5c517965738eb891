"""Benchmark: time from ``campaigns pause`` to the last message sent, during a big fan-out.

Sets up a repository with one push task to N users (a CSV audience; outbox provider, no rate
limit, so the executor sends as fast as it can), records a pilot test and applies, starts
``campaigns run --once --now <inside the window>``, waits until a tenth of the users were sent,
then runs ``campaigns pause TASK --reason bench`` and measures, in the same run:

* figure: from the moment the pause command started to the last write of the outbox (its
  modification time once the executor exited) -- what the user waits for;
* floor: how long the pause command itself took (process start, lock, one transaction): no
  executor can stop before the pause is written.

It checks that the executor stopped mid fan-out (some users left pending) and that no user got
two message ids. Goal (issue 13): figure <= 2 s for 200,000 users.

    python bench/pause.py [--users 200000] [--state URL]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NOW = "2027-01-04T09:30:00+08:00"  # inside the 09:00-12:00 window of the task's first occurrence
GOAL_S = 2.0

PLATFORM = """\
main_branch: main
sites:
  ph:
    name: Philippines wallet
    timezone: Asia/Manila
    channels: [push]
    mini_programs: [shop]
    testers: [u-tester-1]
providers:
  default: {type: outbox, path: .campaigns/outbox}
"""
TEMPLATE = """\
name: Promo push
channel: push
status: approved
fields:
  title: {required: true, max_length: 80}
  content: {required: true, max_length: 200}
  redirection: {required: true, max_length: 2048}
variables:
  first_name: {example: Maria}
"""
CREATIVE = """\
name: Bench
template: push-promo
title: "Hi {{ user.first_name }}"
content: "Half price today"
redirection: https://shop.example.com/bench
"""
TASK = """\
name: Bench push
site: ph
mini_program: shop
channel: push
schedule:
  start_date: 2027-01-04
  finish_date: 2027-01-04
  windows:
    - {start: "09:00", finish: "12:00"}
  recurrence: {type: one_time}
audiences: [crowd]
creatives: [bench-a]
status: active
"""


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def campaigns(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "engine", *args], cwd=root, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"campaigns {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def sent_lines(outbox: Path) -> list[dict]:
    if not outbox.exists():
        return []
    lines = []
    for line in outbox.read_text().splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if item.get("occurrence") != "test":
            lines.append(item)
    return lines


def count_lines(outbox: Path) -> int:
    try:
        with open(outbox, "rb") as handle:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--state", help="state URL (default: a SQLite file in the temporary repository)")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="campaigns-bench-pause-") as folder:
        root = Path(folder)
        write(root, "platform.yaml", PLATFORM)
        write(root, "templates/push-promo.yaml", TEMPLATE)
        write(root, "creatives/bench-a.yaml", CREATIVE)
        write(root, "campaigns/bench/campaign.yaml", "name: Bench\ndescription: Pause benchmark\n")
        write(root, "campaigns/bench/bench-push.yaml", TASK)
        write(root, "audiences/crowd.yaml", "name: Crowd\nsite: ph\nsource:\n  csv: crowd.csv\n")
        rows = "\n".join(f"u-{n:07d},Name{n}" for n in range(options.users))
        write(root, "audiences/crowd.csv", f"user_id,first_name\n{rows}\n")
        env = {**os.environ, "CAMPAIGNS_STATE": options.state or f"sqlite:///{root / 'state.db'}", "GITHUB_EVENT_PATH": ""}
        campaigns(root, env, "test", "bench-push")
        campaigns(root, env, "apply", "--approved-by", "bench", "--reason", "bench")
        outbox = root / ".campaigns" / "outbox" / "push.jsonl"
        tests = count_lines(outbox)

        print(f"fan-out of {options.users:,} users; pausing once a tenth is sent ...", flush=True)
        executor = subprocess.Popen(
            [sys.executable, "-m", "engine", "run", "--once", "--now", NOW],
            cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        while count_lines(outbox) - tests < options.users // 10:
            if executor.poll() is not None:
                sys.exit("the executor finished before the pause: use more --users")
            time.sleep(0.01)
        started = time.time()
        campaigns(root, env, "pause", "bench-push", "--reason", "bench")
        written = time.time()
        executor.wait(timeout=600)
        last = outbox.stat().st_mtime
        lines = sent_lines(outbox)
        users = {line["user_id"] for line in lines}
        ids: dict[str, set[str]] = {}
        for line in lines:
            ids.setdefault(line["user_id"], set()).add(line["message_id"])
        if len(users) >= options.users:
            print(f"note: the whole fan-out ({options.users:,}) was sent before the pause landed; use more --users")
        if any(len(found) > 1 for found in ids.values()):
            sys.exit("a user got two message ids")
        figure = max(0.0, last - started)
        floor = written - started
        print(f"sent before stopping: {len(users):,} of {options.users:,} users ({options.users - len(users):,} left pending)")
        print(f"figure: pause -> last message sent: {figure:.2f} s (goal <= {GOAL_S:.1f} s) {'OK' if figure <= GOAL_S else 'MISSED'}")
        print(f"floor: the pause command alone (start, lock, write): {floor:.2f} s; the executor stopped {max(0.0, last - written):.2f} s after it")


if __name__ == "__main__":
    main()
