"""Benchmark: one occurrence fanned out to 1,000,000 users by ``campaigns run --once``.

Sets up a repository with one push task (outbox provider, no rate limit, the daily cap on),
imports the users CSV into the directory, records a pilot test and applies
(``campaigns test`` + ``campaigns apply --approved-by bench --reason bench``), then times as
whole processes, in the same run:

* floor: a bare loop that reads the same CSV, renders the same creative with the same sandboxed
  environment (``engine.templating.render``) for each user and writes the same JSON line to a
  file (one write per 1,000 lines, one fsync at the end) -- no state, no ledger;
* run: ``campaigns run --once --now <inside the window>`` (ledger rows committed before every
  batch is sent, outbox lines fsynced per batch);
* run --workers 2: the same with two executor processes sharing the occurrence.

Each run gets a fresh state (the users imported again), on SQLite and on PostgreSQL (a database
created for the run and dropped after). It checks that the outbox holds one line per reachable
user and that the ledger agrees, then prints messages/s, the ratio to the floor and peak RSS.

Goals (issue 5): run >= 0.6x floor; run --workers 2 >= 1.0x floor; peak RSS <= 300 MB.

    python bench/fanout.py [--users 1000000] [--backends sqlite,postgresql] [--pg postgresql://postgres@127.0.0.1/postgres]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOW = "2026-12-01T10:00:00+08:00"  # inside the 09:00-21:00 window of the first occurrence

PLATFORM = """\
state: sqlite:///.campaigns/state.db
main_branch: main
sites:
  ph:
    name: Philippines wallet
    timezone: Asia/Manila
    channels: [push]
    testers: [u-tester-1]
    limits:
      max_per_user_per_day: 3
providers:
  default: {type: outbox, path: .campaigns/outbox}
"""
TEMPLATE = """\
name: Promotion push
channel: push
status: approved
fields:
  title: {required: true, max_length: 80}
  content: {required: true, max_length: 178}
  redirection: {required: true, max_length: 2048}
variables:
  first_name: {example: Maria}
  points: {example: 1250}
"""
CREATIVE = """\
name: Flash sale
template: push-promo
title: "{{ user.first_name }}, 50% off ends tonight"
content: "You have {{ user.points }} points. Deals are half price until midnight."
redirection: https://shop.example.com/flash-sale?variant=a
"""
AUDIENCE = """\
name: Everyone with points
site: ph
source:
  where:
    all:
      - {attr: points, gte: 0}
"""
CAMPAIGN = "name: Bench\ndescription: fan-out benchmark\n"
TASK = """\
name: Bench push
site: ph
channel: push
schedule:
  start_date: 2026-12-01
  finish_date: 2026-12-01
  windows:
    - {start: "09:00", finish: "21:00"}
  recurrence: {type: one_time}
audiences: [everyone]
creatives: [flash]
"""

FLOOR = r"""
import csv, json, os, sys, time
from engine.templating import render
users, out = sys.argv[1], sys.argv[2]
title_t = "{{ user.first_name }}, 50% off ends tonight"
content_t = "You have {{ user.points }} points. Deals are half price until midnight."
redirection = "https://shop.example.com/flash-sale?variant=a"
count = 0
buffer = []
with open(users, newline="") as source, open(out, "w") as sink:
    for row in csv.DictReader(source):
        if "push" in (row.get("opt_out") or ""):
            continue
        user = {k: (int(v) if k == "points" else v) for k, v in row.items() if v}
        line = json.dumps({
            "message_id": row["user_id"], "task": "bench", "occurrence": "once", "user_id": row["user_id"],
            "channel": "push", "creative": "flash", "title": render(title_t, user), "content": render(content_t, user),
            "redirection": redirection, "sent_at": "2026-12-01T02:00:00.000000Z",
        })
        buffer.append(line)
        if len(buffer) >= 1000:
            sink.write("\n".join(buffer) + "\n")
            buffer.clear()
        count += 1
    sink.write("\n".join(buffer) + "\n" if buffer else "")
    sink.flush()
    os.fsync(sink.fileno())
print(count)
"""

FIRST = ["Maria", "Juan", "Andrea", "Jose", "Ana", "Paolo", "Liza", "Mark", "Grace", "Ramon"]
CITIES = ["Manila", "Quezon City", "Makati", "Cebu", "Davao"]


def generate_users(path: Path, count: int) -> int:
    """Write the users CSV; returns how many users can receive push (not opted out)."""
    rng = random.Random(5)
    reachable = 0
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "first_name", "points", "city", "segment", "opt_out"])
        writer.writerow(["u-tester-1", "Tess", 1500, "Manila", "vip", ""])
        reachable += 1
        for number in range(count - 1):
            opt_out = "push" if rng.random() < 0.01 else ("sms" if rng.random() < 0.02 else "")
            reachable += opt_out != "push"
            writer.writerow(
                [f"u{number:07d}", rng.choice(FIRST), rng.randrange(0, 5000), rng.choice(CITIES), rng.choice(["new", "vip", "returning"]), opt_out]
            )
    return reachable


def write_repo(root: Path) -> None:
    if root.exists():
        shutil.rmtree(root)
    for relative, text in {
        "platform.yaml": PLATFORM,
        "templates/push-promo.yaml": TEMPLATE,
        "creatives/flash.yaml": CREATIVE,
        "audiences/everyone.yaml": AUDIENCE,
        "campaigns/bench/campaign.yaml": CAMPAIGN,
        "campaigns/bench/bench-push.yaml": TASK,
    }.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


_CPU: dict[str, float] = {}


def timed(command: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, int, str]:
    """Wall time, peak RSS (MB: the largest process of its tree) and stdout of one process;
    its CPU seconds (user + system, children included) are left in ``_CPU["last"]``."""
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=cwd, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - start
        _CPU["last"] = usage.ru_utime + usage.ru_stime
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text = out.read()
        if process.returncode != 0:
            sys.exit(f"command failed ({process.returncode}): {' '.join(command)}\n{text}\n{err.read()[-3000:]}")
    return elapsed, usage.ru_maxrss // 1024, text


def campaigns(*args: str, env: dict[str, str], cwd: Path) -> tuple[float, int, str]:
    return timed([sys.executable, "-m", "engine", *args], env, cwd)


def prepare_state(root: Path, users_csv: Path, state_url: str, env: dict[str, str]) -> float:
    """A fresh state with the users imported, the task pilot-tested and applied; returns the
    import time."""
    shutil.rmtree(root / ".campaigns", ignore_errors=True)
    importer = (
        "import sys, time\n"
        "from engine.state import StateStore\n"
        "from engine.delivery.directory import import_users\n"
        "with StateStore.open(sys.argv[1], sys.argv[2]) as store:\n"
        "    started = time.perf_counter(); import_users(store, sys.argv[3]); print(time.perf_counter() - started)\n"
    )
    _, _, out = timed([sys.executable, "-c", importer, state_url, str(root), str(users_csv)], env)
    env = {**env, "CAMPAIGNS_STATE": state_url}
    campaigns("test", "bench-push", env=env, cwd=root)
    campaigns("apply", "--approved-by", "bench", "--reason", "bench", env=env, cwd=root)
    return float(out.strip())


def count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def verify(root: Path, state_url: str, reachable: int, env: dict[str, str]) -> str:
    outbox = root / ".campaigns" / "outbox" / "push.jsonl"
    lines = count_lines(outbox) - 1  # the pilot test's line
    _, _, out = campaigns("report", "bench-push", "--format", "json", "--state", state_url, env=env, cwd=root)
    totals = json.loads(out)["totals"]
    if lines != reachable or totals["sent"] != reachable:
        sys.exit(f"wrong delivery: outbox {lines:,} lines, ledger {totals}, expected {reachable:,} sent")
    return f"outbox {lines:,} lines = ledger {totals['sent']:,} sent, {totals['suppressed']:,} suppressed"


def pg_database(admin_url: str) -> tuple[str, callable]:
    import psycopg

    name = f"campaigns_bench_{uuid.uuid4().hex[:10]}"
    plain = admin_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = plain.rpartition("/")

    def drop() -> None:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"{base}/{name}", drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--workers", default="1,2", help="worker counts to time, comma-separated")
    parser.add_argument("--pg", default=os.environ.get("CAMPAIGNS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--root", type=Path, default=HERE / ".work" / "fanout")
    parser.add_argument("--batch-size", type=int, default=None, help="executor batch size (default: platform.yaml's)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each measurement; the fastest is kept")
    arguments = parser.parse_args()

    root = arguments.root
    write_repo(root)
    users_csv = root.parent / f"fanout-users-{arguments.users}.csv"
    if not users_csv.exists():
        generate_users(users_csv, arguments.users)
    reachable = _reachable(users_csv)
    env = {k: v for k, v in os.environ.items() if k != "CAMPAIGNS_STATE"}
    env["PYTHONPATH"] = str(HERE.parent)
    print(f"{arguments.users:,} users ({reachable:,} reachable by push), {os.cpu_count()} cores")

    floors = [timed([sys.executable, "-c", FLOOR, str(users_csv), str(root / "floor.jsonl")], env) for _ in range(arguments.repeat)]
    floor_s, floor_rss, out = min(floors, key=lambda item: item[0])
    print(f"load average before the runs: {os.getloadavg()[0]:.2f} (other processes share these cores)")
    floor_rate = int(out.strip()) / floor_s
    print(f"floor: {floor_rate:,.0f} messages/s ({floor_s:.2f} s, peak RSS {floor_rss} MB; best of {arguments.repeat})")

    for backend in arguments.backends.split(","):
        for workers in [int(w) for w in arguments.workers.split(",")]:
            results = []
            for _ in range(arguments.repeat):
                drop = None
                if backend == "sqlite":
                    state_url = f"sqlite:///{root}/.campaigns/state.db"
                else:
                    state_url, drop = pg_database(arguments.pg)
                try:
                    import_s = prepare_state(root, users_csv, state_url, env)
                    command = ["run", "--once", "--now", NOW, "--log", "quiet", "--state", state_url, "--workers", str(workers)]
                    if arguments.batch_size:
                        command += ["--batch-size", str(arguments.batch_size)]
                    run_s, rss, _ = campaigns(*command, env=env, cwd=root)
                    cpu_s = _CPU["last"]
                    check = verify(root, state_url, reachable, env)
                finally:
                    if drop is not None:
                        drop()
                results.append((run_s, rss, import_s, check, cpu_s))
            run_s, rss, import_s, check, cpu_s = min(results, key=lambda item: item[0])
            rate = reachable / run_s
            goal = 0.6 if workers == 1 else 1.0
            verdict = "ok" if rate >= goal * floor_rate and rss <= 300 else "MISSED"
            print(
                f"{backend:<10} workers={workers}: {rate:,.0f} messages/s ({run_s:.2f} s, {cpu_s:.1f} CPU-s = "
                f"{cpu_s / run_s:.2f} cores) = {rate / floor_rate:.2f}x floor (goal {goal}x), peak RSS {rss} MB, "
                f"import {arguments.users / import_s:,.0f} rows/s [{verdict}]; {check}"
            )


def _reachable(users_csv: Path) -> int:
    with users_csv.open(newline="") as handle:
        return sum(1 for row in csv.DictReader(handle) if "push" not in (row["opt_out"] or ""))


if __name__ == "__main__":
    main()
