"""Benchmark: `campaigns users import` of a 1,000,000-row CSV against the csv-module parse floor.

All timed as whole processes in the same run, so the ratio holds on a noisy machine:

* floor: a Python process that reads and parses the same CSV with the ``csv`` module and
  nothing else;
* sqlite: ``campaigns users import FILE --state sqlite:///<fresh file>`` (a new state each repeat);
* postgresql: the same into a fresh database created for the run and dropped after
  (``--pg`` admin URL; skipped with ``--no-pg`` or when the server cannot be reached).

Goal (issue 5): >= 100,000 rows/s on SQLite.

Then, on the imported directory, the cost of streaming an audience's members (what the executor
pays per member): ``task_members`` over a where rule that selects every user, against a floor
that reads the same rows with a bare DBAPI cursor and ``json.loads`` of each attribute document.

    python bench/users_import.py [--rows 1000000] [--repeat 3] [--pg postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

FLOOR = r"""
import csv, sys
rows = 0
with open(sys.argv[1], newline="", encoding="utf-8-sig") as handle:
    reader = csv.reader(handle)
    next(reader)
    for row in reader:
        rows += 1
print(rows)
"""

FIRST_NAMES = ["Juan", "Maria", "Jose", "Ana", "Tess", "Tom", "Andrea", "Joy", "Trisha", "Mark", "Ñoño", "Liza"]
CITIES = ["Manila", "Quezon City", "Makati", "Cebu", "Davao", "Taguig", "Pasig", "Iloilo"]
SEGMENTS = ["new", "returning", "vip", "dormant"]
OPT_OUTS = ["", "", "", "", "", "", "push", "sms", "sms|push", "inbox-ewallet"]


MEMBERS = r"""
import sys, time
from engine.state import StateStore
from engine.delivery.audiences import task_members
bodies = {"all": {"name": "all", "site": "ph", "source": {"where": {"all": [{"attr": "points", "gte": 0}]}}}}
with StateStore.open(sys.argv[1], ".") as store:
    start = time.perf_counter()
    count = 0
    for batch in task_members(store, "bench", {"audiences": ["all"]}, bodies, batch_size=5000):
        count += len(batch)
    print(count, time.perf_counter() - start)
"""

MEMBERS_FLOOR_SQLITE = r"""
import json, sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1])
start = time.perf_counter()
count = 0
loads = json.loads
cursor = conn.execute("SELECT user_id, attributes, opt_out FROM campaigns_users ORDER BY user_id")
while rows := cursor.fetchmany(5000):
    for user_id, attributes, opt_out in rows:
        loads(attributes)
    count += len(rows)
print(count, time.perf_counter() - start)
"""

MEMBERS_FLOOR_POSTGRESQL = r"""
import json, psycopg, sys, time
conn = psycopg.connect(sys.argv[1])
start = time.perf_counter()
count = 0
loads = json.loads
with conn.transaction():
    cursor = conn.cursor(name="floor")
    cursor.execute("SELECT user_id, attributes::text, opt_out FROM campaigns_users ORDER BY user_id")
    while rows := cursor.fetchmany(5000):
        for user_id, attributes, opt_out in rows:
            loads(attributes)
        count += len(rows)
print(count, time.perf_counter() - start)
"""


def members_figures(label: str, state_url: str, floor_script: str, floor_target: str, repeat: int) -> None:
    """Streaming cost per member (in-process timing, best of ``repeat``) against its floor."""
    ours = min(float(run([sys.executable, "-c", MEMBERS, state_url])[2].split()[1]) for _ in range(repeat))
    count, _ = run([sys.executable, "-c", MEMBERS, state_url])[2].split()
    floor = min(float(run([sys.executable, "-c", floor_script, floor_target])[2].split()[1]) for _ in range(repeat))
    members = int(count)
    print(
        f"{label} members streamed: {members:,} in {ours:.2f} s = {ours / members * 1e6:.2f} us/member; "
        f"floor (cursor + json.loads) {floor / members * 1e6:.2f} us/member ({ours / floor:.1f}x)"
    )


def generate(path: Path, rows: int, seed: int = 5) -> None:
    """user_id, first_name, points, city, segment, opt_out; ids in random order (as exports are)."""
    rng = random.Random(seed)
    order = list(range(rows))
    rng.shuffle(order)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("user_id,first_name,points,city,segment,opt_out\n")
        chunk = []
        for number in order:
            chunk.append(
                f"u{number:08d},{rng.choice(FIRST_NAMES)},{rng.randint(0, 5000)},{rng.choice(CITIES)},"
                f"{rng.choice(SEGMENTS)},{rng.choice(OPT_OUTS)}\n"
            )
            if len(chunk) >= 50_000:
                out.write("".join(chunk))
                chunk = []
        out.write("".join(chunk))


def run(command: list[str]) -> tuple[float, int, str]:
    """Wall time, peak RSS (MB) and stdout of one process; exits if it fails."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    out = process.stdout.read().decode() if process.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0:
        err = process.stderr.read().decode() if process.stderr else ""
        sys.exit(f"command failed: {' '.join(command)}\n{err}")
    return elapsed, usage.ru_maxrss // 1024, out.strip()


def campaigns(*args: str) -> list[str]:
    return [sys.executable, "-m", "engine", *args]


def pg_admin(url: str, statement: str) -> bool:
    try:
        import psycopg
    except ImportError:
        return False
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(statement)
    except psycopg.Error as problem:
        print(f"postgresql: skipped ({str(problem).strip().splitlines()[0]})")
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the best is reported")
    parser.add_argument("--pg", default=os.environ.get("CAMPAIGNS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    options = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="campaigns-users-bench-"))
    csv_path = work / "users.csv"
    try:
        started = time.perf_counter()
        generate(csv_path, options.rows)
        size_mb = csv_path.stat().st_size / 1e6
        print(f"generated {options.rows:,} rows ({size_mb:.1f} MB) in {time.perf_counter() - started:.1f} s: {csv_path}")

        floor = min(run([sys.executable, "-c", FLOOR, str(csv_path)])[0] for _ in range(options.repeat))
        print(f"floor (csv module parse, whole process): {floor:6.2f} s  {options.rows / floor:>12,.0f} rows/s")

        results = []
        for attempt in range(options.repeat):
            state = work / f"sqlite-{attempt}" / "state.db"
            elapsed, rss, out = run(campaigns("users", "import", str(csv_path), "--repo", str(work), "--state", f"sqlite:///{state}"))
            results.append((elapsed, rss, out))
            if attempt:
                shutil.rmtree(state.parent, ignore_errors=True)
        elapsed, rss, out = min(results)
        print(
            f"sqlite  users import (whole process):     {elapsed:6.2f} s  {options.rows / elapsed:>12,.0f} rows/s  "
            f"{elapsed / floor:4.1f}x floor  peak RSS {rss} MB   goal >= 100,000 rows/s: "
            f"{'met' if options.rows / elapsed >= 100_000 else 'NOT met'}"
        )
        print(f"        {out}")
        first = work / "sqlite-0" / "state.db"
        members_figures("sqlite ", f"sqlite:///{first}", MEMBERS_FLOOR_SQLITE, str(first), options.repeat)

        if not options.no_pg:
            name = f"campaigns_bench_{uuid.uuid4().hex[:10]}"
            if pg_admin(options.pg, f'CREATE DATABASE "{name}"'):
                from sqlalchemy.engine import make_url

                url = make_url(options.pg).set(database=name).render_as_string(hide_password=False)
                try:
                    results = []
                    for attempt in range(options.repeat):
                        schema = f"s{attempt}"
                        elapsed, rss, out = run(
                            campaigns("users", "import", str(csv_path), "--repo", str(work), "--state", f"{url}?schema={schema}")
                        )
                        results.append((elapsed, rss, out))
                    elapsed, rss, out = min(results)
                    print(
                        f"postgresql users import (whole process): {elapsed:6.2f} s  {options.rows / elapsed:>12,.0f} rows/s  "
                        f"{elapsed / floor:4.1f}x floor  peak RSS {rss} MB (client)"
                    )
                    print(f"        {out}")
                    members_figures(
                        "postgresql", f"{url}?schema=s0", MEMBERS_FLOOR_POSTGRESQL, f"{url}?options=-csearch_path%3Ds0", options.repeat
                    )
                finally:
                    pg_admin(options.pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        if options.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
