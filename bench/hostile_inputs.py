"""Benchmark: hostile inputs are refused in under 2 s and 300 MB, or processed in linear time.

Each case is a copy of the shipped example with one hostile change (issue 10 item 7, issue 9
items 7-9). For each, the real command runs as a process with a memory ceiling and a time limit;
the table gives its verdict (exit code and first problem code), wall time and peak RSS, next to
the floors measured in the same run.

Every case but the ten-year one-time task must be refused (exit 1 with problems, not a crash,
not accepted). Floors: the same command (validate, plan, schedule, schedule --format ics) on the unchanged
example. Goals: a refusal takes at most 2 s more than its floor, no case crashes or exceeds
300 MB, and the 100,000-key file is "linear": its time above the floor at 100,000 keys is at most
2.5x that at 50,000 (likewise 20,000 against 10,000 unsortable list items).

    python bench/hostile_inputs.py [--only NAME ...] [--repeat 3] [--timeout 120] [--root bench/.work/hostile]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
PARTS = ("platform.yaml", "templates", "audiences", "creatives", "campaigns", "schemas")
TASK = "campaigns/december-flash-sale/flash-sale-push.yaml"
CAMPAIGN = "campaigns/december-flash-sale/campaign.yaml"
MEMORY_CEILING = 4 << 30


def _replace(root: Path, path: str, old: str, new: str) -> None:
    target = root / path
    text = target.read_text()
    assert old in text, (path, old)
    target.write_text(text.replace(old, new, 1))


def _keys(count: int) -> Callable[[Path], None]:
    def change(root: Path) -> None:
        (root / CAMPAIGN).write_text("name: x\ndescription: y\n" + "".join(f"k{i}: 0\n" for i in range(count)))

    return change


def _aliased_text(root: Path) -> None:
    conditions = "".join("        - {attr: a, eq: *a, ne: *a}\n" for _ in range(7000))
    (root / "audiences/high-points-ph.yaml").write_text(
        f"name: x\nsite: ph\nx-big: &a {'A' * 790_000}\nsource:\n  where:\n    any:\n      - all:\n{conditions}"
    )


def _dates(start: str, finish: str, recurrence: str | None = None) -> Callable[[Path], None]:
    def change(root: Path) -> None:
        _replace(root, TASK, "start_date: 2026-12-01", f"start_date: {start}")
        _replace(root, TASK, "finish_date: 2026-12-31", f"finish_date: {finish}")
        if recurrence:
            _replace(root, TASK, "recurrence: {type: daily, every: 2}", f"recurrence: {recurrence}")

    return change


def _operand(value: str) -> Callable[[Path], None]:
    return lambda root: _replace(root, "audiences/high-points-ph.yaml", "{attr: points, gte: 1000}", f"{{attr: points, gte: {value}}}")


def _example(value: str) -> Callable[[Path], None]:
    return lambda root: _replace(root, "templates/push-promo.yaml", "variables:\n", f"variables:\n  bonus: {{example: {value}}}\n")


def _unique_mappings(count: int) -> Callable[[Path], None]:
    def change(root: Path) -> None:
        channels = ", ".join(f"{{a: {i}}}" for i in range(count))
        _replace(root, "platform.yaml", "channels: [push, sms, inbox-ewallet, inbox-miniprogram]", f"channels: [{channels}]")

    return change


VALIDATE = ("validate", "--no-cache")
PLAN = ("plan", "--state", "sqlite:///.campaigns/bench-state.db", "--no-color")
SCHEDULE = ("schedule", "flash-sale-push")
ICS = ("schedule", "flash-sale-push", "--format", "ics")

# Inputs processed in time linear in their size (a problem per key or item): judged by the
# ratio of the larger to the smaller size, not against the floor.
LINEAR = (("keys-50k", "keys-100k"), ("unique-10k-mappings", "unique-20k-mappings"))

# Cases that are valid (everything else must be refused, exit 1, never crash or be accepted).
ACCEPTED = ("one-time-10-years",)

# name -> (change, commands)
CASES: dict[str, tuple[Callable[[Path], None], tuple[tuple[str, ...], ...]]] = {
    "keys-50k": (_keys(50_000), (VALIDATE,)),
    "keys-100k": (_keys(100_000), (VALIDATE,)),
    "aliased-790KB-text": (_aliased_text, (VALIDATE,)),
    "unique-10k-mappings": (_unique_mappings(10_000), (VALIDATE,)),
    "unique-20k-mappings": (_unique_mappings(20_000), (VALIDATE,)),
    "year-0001": (_dates("0001-12-01", "0001-12-31"), (VALIDATE, PLAN, SCHEDULE, ICS)),
    "year-9999": (_dates("9999-12-01", "9999-12-31"), (VALIDATE, PLAN, SCHEDULE, ICS)),
    "one-time-2026-9999": (_dates("2026-12-01", "9999-12-31", "{type: one_time}"), (VALIDATE, PLAN, SCHEDULE)),
    "one-time-10-years": (_dates("2026-12-01", "2036-11-30", "{type: one_time}"), (VALIDATE, PLAN)),
    "where-inf": (_operand(".inf"), (VALIDATE, PLAN)),
    "where-nan": (_operand(".nan"), (VALIDATE, PLAN)),
    "where-400-digits": (_operand("1" * 400), (VALIDATE, PLAN)),
    "example-inf": (_example(".inf"), (VALIDATE, PLAN)),
    "example-nan": (_example(".nan"), (VALIDATE, PLAN)),
    "example-400-digits": (_example("1" * 400), (VALIDATE, PLAN)),
    "tester-newline": (lambda root: _replace(root, TASK, "status: active", 'status: active\ntesters: ["u-tester-1\\n"]'), (VALIDATE,)),
    "site-key-newline": (lambda root: _replace(root, "platform.yaml", "\n  ph:\n", '\n  "ph\\n":\n'), (VALIDATE,)),
    "site-key-space": (lambda root: _replace(root, "platform.yaml", "\n  ph:\n", "\n  PH Site:\n"), (VALIDATE,)),
}


def build(root: Path, name: str) -> Path:
    target = root / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for part in PARTS:
        source = PROJECT / part
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, target / part)
    if name in CASES:
        CASES[name][0](target)
    return target


def measure(repo: Path, args: tuple[str, ...], timeout: float) -> dict:
    """``campaigns ARGS`` in ``repo`` under a 4 GB ceiling: verdict (exit code and first problem
    code, or the crash), wall seconds, and the peak RSS of exactly that process (GNU time)."""
    gnu_time = "/usr/bin/time"
    report = repo / ".bench-time.txt"
    shutil.rmtree(repo / ".campaigns", ignore_errors=True)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CEILING, MEMORY_CEILING))

    started = time.perf_counter()
    process = subprocess.Popen(
        [gnu_time, "-f", "%M", "-o", str(report), sys.executable, "-m", "engine", *args],
        cwd=repo,
        env={**os.environ, "CAMPAIGNS_WORKERS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=limit,
        start_new_session=True,  # its own process group: a timeout stops the command, not just `time`
    )
    try:
        out, err = process.communicate(timeout=timeout)
        code: int | None = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        code = None
    wall = time.perf_counter() - started
    try:
        rss = int(report.read_text().split()[-1]) / 1024
    except (OSError, ValueError, IndexError):
        rss = float("nan")
    text = (out + err).decode(errors="replace")
    codes = list(dict.fromkeys(re.findall(r":\d+:\d+: ([a-z-]+):", text)))
    if code is None:
        verdict = f"killed after {timeout:g} s"
        rss = float("nan")  # not measured: GNU time was killed with it
    elif "Internal error" in text or "Traceback" in text:
        crash = re.search(r"Internal error: ([^\n]*)", text) or re.search(r"(\w+Error[^\n]*)", text)
        verdict = "crash: " + (crash.group(1)[:60] if crash else "?")
    else:
        verdict = f"exit {code}" + (f", {', '.join(sorted(codes)[:3])}" if codes else "")
    return {"verdict": verdict, "wall": wall, "rss": rss}


def label(args: tuple[str, ...]) -> str:
    return {VALIDATE: "validate", PLAN: "plan", SCHEDULE: "schedule", ICS: "schedule --format ics"}[args]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="case names (default: all)")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent / ".work" / "hostile")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the fastest is kept")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    options = parser.parse_args()

    def best(repo: Path, args: tuple[str, ...]) -> dict:
        runs = [measure(repo, args, options.timeout)]
        while len(runs) < options.repeat and not runs[-1]["verdict"].startswith("killed"):
            runs.append(measure(repo, args, options.timeout))
        return min(runs, key=lambda run: run["wall"])

    floor_repo = build(options.root, "floor")
    floors = {}
    for args in (VALIDATE, PLAN, SCHEDULE, ICS):
        floors[args] = best(floor_repo, args)
        print(f"floor: {label(args):<26} of the example: {floors[args]['wall']:6.2f} s {floors[args]['rss']:5.0f} MB")
    print(f"{'case':<22} {'command':<26} {'verdict':<36} {'wall':>8} {'RSS':>8}  goal: refused <= floor + 2 s, <= 300 MB")
    rows = []
    failures = 0
    for name in options.only or list(CASES):
        repo = build(options.root, name)
        for args in CASES[name][1]:
            row = best(repo, args)
            expected = "exit 0" if name in ACCEPTED else "exit 1"
            ok = row["verdict"].startswith(expected) and row["rss"] <= 300
            linear = any(name in pair for pair in LINEAR)
            if row["verdict"].startswith("exit 1") and not linear:
                ok = ok and row["wall"] <= floors[args]["wall"] + 2.0
            failures += not ok
            rows.append({"case": name, "command": label(args), **row, "ok": ok})
            print(
                f"{name:<22} {label(args):<26} {row['verdict']:<36} {row['wall']:>6.2f} s {row['rss']:>5.0f} MB  "
                + ("ok" if ok else "MISSED")
            )
    floor = floors[VALIDATE]
    by_case = {row["case"]: row["wall"] for row in rows if row["command"] == "validate"}
    for small, large in LINEAR:
        if small in by_case and large in by_case:
            work = [max(by_case[key] - floor["wall"], 0.01) for key in (small, large)]
            ratio = work[1] / work[0]
            print(f"{large} vs {small} (time above the floor): {ratio:.2f}x (goal <= 2.5x for twice the size: linear)")
            failures += ratio > 2.5
    if options.json:
        print(json.dumps(rows, indent=2))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
