"""Benchmark: `campaigns users import` of a 1,000,000-row CSV against the csv-module parse floor.

All timed as whole processes in the same run, so the ratio holds on a noisy machine:

* floor: a Python process that reads and parses the same CSV with the ``csv`` module and
  nothing else;
* sqlite: ``campaigns users import FILE --state sqlite:///<fresh file>`` (a new state each repeat);
* postgresql: the same into a fresh database created for the run and dropped after
  (``--pg`` admin URL; skipped with ``--no-pg`` or when the server cannot be reached).

Goal (issue 5): >= 100,000 rows/s on SQLite.

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
            shutil.rmtree(state.parent, ignore_errors=True)
        elapsed, rss, out = min(results)
        print(
            f"sqlite  users import (whole process):     {elapsed:6.2f} s  {options.rows / elapsed:>12,.0f} rows/s  "
            f"{elapsed / floor:4.1f}x floor  peak RSS {rss} MB   goal >= 100,000 rows/s: "
            f"{'met' if options.rows / elapsed >= 100_000 else 'NOT met'}"
        )
        print(f"        {out}")

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
                finally:
                    pg_admin(options.pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        if options.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
