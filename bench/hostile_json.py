"""Benchmark: hostile JSON inputs (issue 10 item 7) refused by the bounded reader, and its cost
on an ordinary big document, each against a floor measured in the same run.

* refusals, as whole processes with their peak RSS: ``campaigns apply --event FILE`` and
  ``campaigns apply PLAN`` with a 100,000-deep file and with a real (not sparse) file over the
  limit (``--big-mb``, default 200), against the floor ``campaigns --help`` (the start-up that
  any command pays). Goal: under 2 s and 300 MB each.
* cost: ``jsonlimits.loads`` of a plan-like document of ``--tasks`` changes (10,000: about
  25 MB, the size of a saved plan of 10,000 tasks) against ``json.loads`` of the same bytes.

    python bench/hostile_json.py [--big-mb 200] [--tasks 10000] [--repeat 3]
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

from engine import jsonlimits


def run(args: list[str], cwd: Path) -> tuple[float, int, int, str]:
    """Seconds, peak RSS (MB), exit code and last stderr line of ``python -m engine ARGS``."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "engine", *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = process.stderr.read() if process.stderr else b""
    _pid, status, usage = os.wait4(process.pid, 0)  # reaped here, so its own rusage is ours to read
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    last = (stderr.decode(errors="replace").strip().splitlines() or [""])[-1]
    return elapsed, usage.ru_maxrss // 1024, process.returncode, last


def best(times: list[tuple[float, int, int, str]]) -> tuple[float, int, int, str]:
    return min(times, key=lambda row: row[0])


def plan_like(tasks: int) -> bytes:
    change = {
        "address": "task.t", "kind": "task", "action": "update",
        "diffs": [{"path": "schedule.windows[0].start", "kind": "changed", "old": "09:00", "new": "10:00"}],
        "before": {"name": "Flash {{ user.first_name }}", "schedule": {"windows": [{"start": "09:00", "finish": "11:30"}]},
                   "audiences": ["a-1", "a-2"], "creatives": ["c-1"], "notes": "x" * 1500},
        "blockers": [{"code": "needs-pilot-test", "message": "needs a pilot test of its current content"}],
    }
    return json.dumps({"kind": "campaigns-plan", "changes": [dict(change, address=f"task.t-{i}") for i in range(tasks)]}).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big-mb", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        deep = work / "deep.json"
        deep.write_text("[" * 100_000 + "]" * 100_000)
        big = work / "big.json"
        with big.open("w") as handle:
            handle.write("[")
            for _ in range(options.big_mb * 1000):
                handle.write('"' + "x" * 998 + '",')
            handle.write("0]")
        state = f"sqlite:///{work}/state.db"
        floor = best([run(["--help"], work) for _ in range(options.repeat)])
        print(f"floor  campaigns --help: {floor[0]:.2f} s, {floor[1]} MB")
        cases = [
            ("apply --event, 100,000 deep", ["apply", "--event", str(deep), "--state", state]),
            (f"apply --event, {options.big_mb} MB", ["apply", "--event", str(big), "--state", state]),
            ("apply PLAN, 100,000 deep", ["apply", str(deep), "--approved-by", "a", "--reason", "b", "--state", state]),
            (f"apply PLAN, {options.big_mb} MB", ["apply", str(big), "--approved-by", "a", "--reason", "b", "--state", state]),
        ]
        for label, args in cases:
            seconds, rss, code, last = best([run(args, work) for _ in range(options.repeat)])
            verdict = "ok" if seconds < 2 and rss < 300 else "OVER THE GOAL"
            print(f"{label:32} exit {code}  {seconds:.2f} s ({seconds / floor[0]:.1f}x floor)  {rss} MB  {verdict}  | {last[:110]}")
    document = plan_like(options.tasks)
    parse = min(_timed(lambda: json.loads(document)) for _ in range(options.repeat))
    bounded = min(
        _timed(lambda: jsonlimits.loads(document, what="plan", max_bytes=len(document))) for _ in range(options.repeat)
    )
    print(f"plan-like document of {options.tasks:,} changes ({len(document) / 1e6:.1f} MB): json.loads {parse:.3f} s (floor), "
          f"jsonlimits.loads {bounded:.3f} s ({bounded / parse:.2f}x floor)")


def _timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
