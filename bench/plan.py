"""Benchmark: `campaigns plan` and `campaigns apply` on the synthetic 10,000-task repository.

Every figure is a whole process (``campaigns ...``), timed against the CSafeLoader parse floor
measured in the same run (see bench/validate.py), so the ratios hold on a noisy machine:

* full plan    ``campaigns plan --out plan.json`` against an empty state (validation cache warm,
               plan digest cache cold: the first plan of a checkout);
* apply        ``campaigns apply plan.json`` of that saved plan: 21,201 resources, 10,000 task
               statuses, one history entry;
* no-op plan   ``campaigns plan`` right after the apply;
* one-file     ``campaigns plan`` after one task file changed (a new edit each run, so no cache
               has seen it);
* all changed  ``campaigns plan`` after every task was renamed and given another window (a pull
               request that changes 10,000 tasks; a new edit each run), through the forked state
               reader as ``campaigns plan`` runs it. Before issue 9 it never returned; a run that
               takes longer than ``--timeout`` fails the benchmark instead of hanging it.

Goals (issue 4): no-op <= 1.0x floor; one-file <= 1.1x floor; apply of 20,000 resources within
3x floor on SQLite and 5x on PostgreSQL. The all-changed plan has no goal yet; it is reported
against the same floor.

    python bench/plan.py [--backend sqlite|postgresql] [--repeat 3] [--tasks 10000] [--timeout 900]

With ``--backend postgresql`` each run uses a fresh database created on ``--pg-admin`` (default
postgresql://postgres@127.0.0.1:5432/postgres) and dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import generate
from validate import FLOOR

from engine import localcache


def run(
    command: list[str], ok: tuple[int, ...] = (0,), env: dict | None = None, timeout: float | None = None
) -> tuple[float, int]:
    """Wall time and peak RSS (MB) of one process; exits the benchmark if it fails or outlives ``timeout``."""
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors, env=env)
        timer = threading.Timer(timeout, process.kill) if timeout else None
        if timer:
            timer.start()
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - start
        if timer:
            timer.cancel()
            if timeout and elapsed >= timeout:
                sys.exit(f"command did not return within {timeout:.0f} s (killed): {' '.join(command)}")
        code = os.waitstatus_to_exitcode(status)
        if code not in ok:
            errors.seek(0)
            sys.exit(f"command failed ({code}): {' '.join(command)}\n{errors.read().decode()[-3000:]}")
    return elapsed, usage.ru_maxrss // 1024


PILOT = r"""
import sys
from engine.validation.pipeline import load_repository
from engine.plan.desired import Desired
from engine.state import PilotResult, StateStore

repository = load_repository(sys.argv[1])
desired = Desired(repository)
with StateStore.open(sys.argv[2], sys.argv[1]) as store:
    for task_id, task in repository.tasks.items():
        result = PilotResult("u-tester-1", task.data["channel"], True, "bench")
        store.record_pilot_test(task_id, desired.task_content_digest(task_id), [result], mark_testing=False)
"""


class Postgres:
    """Fresh databases on the admin URL, dropped at the end."""

    def __init__(self, admin: str) -> None:
        import psycopg

        self.psycopg = psycopg
        self.admin = admin
        self.created: list[str] = []

    def fresh(self) -> str:
        name = f"campaigns_bench_{uuid.uuid4().hex[:10]}"
        with self.psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        from sqlalchemy.engine import make_url

        return make_url(self.admin).set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self.psycopg.connect(self.admin, autocommit=True) as conn:
            for name in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()


def edit_one_task(root: Path, counter: int) -> tuple[Path, str]:
    """Change one task's name (a new edit each run); returns the file and its original text."""
    path = sorted((root / "campaigns").glob("*/task-*.yaml"))[counter % 7]
    original = path.read_text()
    text = re.sub(r"^name: .*$", f"name: Edited task {counter} {uuid.uuid4().hex[:6]}", original, count=1, flags=re.M)
    path.write_text(text)
    return path, original


def edit_all_tasks(root: Path, counter: int) -> dict[Path, str]:
    """Rename every task and move its first window's finish (a new edit each run); the originals."""
    originals: dict[Path, str] = {}
    for path in sorted((root / "campaigns").glob("*/task-*.yaml")):
        original = path.read_text()
        text = re.sub(r"^name: (.*)$", rf"name: \1 r{counter}", original, count=1, flags=re.M)
        text = text.replace('finish: "11:30"', f'finish: "11:{31 + counter % 28}"', 1)
        path.write_text(text)
        originals[path] = original
    return originals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--creatives", type=int, default=10_000)
    parser.add_argument("--audiences", type=int, default=1_000)
    parser.add_argument("--templates", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the best is kept")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-admin", default=os.environ.get("CAMPAIGNS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent / ".work" / "plan-repo")
    parser.add_argument("--timeout", type=float, default=900, help="seconds before the all-changed plan counts as hung")
    arguments = parser.parse_args()

    root = arguments.root
    generate(root, arguments.tasks, arguments.creatives, arguments.audiences, arguments.templates)
    files = sum(1 for _ in root.rglob("*.yaml"))
    print(f"synthetic repository: {files:,} YAML files at {root}; state backend: {arguments.backend}")
    campaigns = [sys.executable, "-m", "engine"]
    env = {**os.environ}
    env.pop("CAMPAIGNS_STATE", None)
    env.pop("GITHUB_EVENT_PATH", None)
    env.pop("CAMPAIGNS_NO_FORK", None)  # plan as CI runs it: with the forked state reader
    env["CAMPAIGNS_CACHE_DIR"] = os.environ["CAMPAIGNS_CACHE_DIR"] = str(root.parent / "plan-cache")  # the bench's own caches
    run(campaigns + ["validate", "--repo", str(root)], env=env)  # warm the validation cache, check it is valid
    plan_file = root / ".campaigns" / "bench-plan.json"
    postgres = Postgres(arguments.pg_admin) if arguments.backend == "postgresql" else None

    floors, fulls, applies, noops, ones, alls = [], [], [], [], [], []
    try:
        for counter in range(arguments.repeat):
            if postgres:
                state = postgres.fresh()
            else:
                folder = root / ".campaigns" / f"bench-state-{counter}"
                shutil.rmtree(folder, ignore_errors=True)
                state = f"sqlite:///{folder}/state.db"
            common = ["--repo", str(root), "--state", state]
            run([sys.executable, "-c", PILOT, str(root), state], env=env)  # setup: every task passed a pilot test
            floors.append(run([sys.executable, "-c", FLOOR, str(root)]))
            (localcache.folder(root) / "plan.marshal").unlink(missing_ok=True)
            fulls.append(run(campaigns + ["plan", *common, "--out", str(plan_file)], env=env))
            applies.append(
                run(campaigns + ["apply", str(plan_file), *common, "--approved-by", "bench", "--reason", "benchmark"], env=env)
            )
            noops.append(run(campaigns + ["plan", *common, "--detailed-exitcode"], env=env))
            edited, original = edit_one_task(root, counter)
            try:
                ones.append(run(campaigns + ["plan", *common, "--detailed-exitcode"], ok=(2,), env=env))
            finally:
                edited.write_text(original)
            originals = edit_all_tasks(root, counter)
            try:
                alls.append(
                    run(campaigns + ["plan", *common, "--detailed-exitcode"], ok=(2,), env=env, timeout=arguments.timeout)
                )
            finally:
                for path, text in originals.items():
                    path.write_text(text)
            if postgres:
                postgres.drop_all()
            else:
                shutil.rmtree(root / ".campaigns" / f"bench-state-{counter}", ignore_errors=True)
    finally:
        if postgres:
            postgres.drop_all()

    def best(times: list[tuple[float, int]]) -> tuple[float, int]:
        return min(times, key=lambda item: item[0])

    floor = best(floors)
    goal_apply = 3.0 if arguments.backend == "sqlite" else 5.0
    rows = [
        ("full plan vs empty state (--out)", best(fulls), None),
        (f"apply of the saved plan ({arguments.backend})", best(applies), goal_apply),
        ("no-op plan", best(noops), 1.0),
        ("plan after one file changed", best(ones), 1.1),
        (f"plan of {len(originals):,} changed tasks", best(alls), None),
    ]
    print(f"floor  (read + CSafeLoader parse, one process): {floor[0]:7.2f} s   peak RSS {floor[1]:4d} MB")
    for label, (seconds, rss), goal in rows:
        ratio = seconds / floor[0]
        verdict = "" if goal is None else f" (goal <= {goal:.1f}x: {'ok' if ratio <= goal else 'MISSED'})"
        print(f"{label:<42} {seconds:7.2f} s   peak RSS {rss:4d} MB   {ratio:.2f}x floor{verdict}")
    print(f"{os.cpu_count()} cores; best of {arguments.repeat} runs each")


if __name__ == "__main__":
    main()
