"""Benchmark: `campaigns validate` on a synthetic repository against the CSafeLoader parse floor.

Both are timed as whole processes in the same run, so the ratio holds on a noisy machine:

* floor: a Python process that reads every resource file and parses it with
  ``yaml.load(..., Loader=yaml.CSafeLoader)`` and nothing else;
* cold: ``campaigns validate`` with no cache;
* warm: ``campaigns validate`` again over the unchanged repository (content-digest cache);
* schedules: cold validate with the `no-occurrences` rule's schedule expansion switched off,
  to show what expanding 10,000 schedules adds.

Goals (issue 2/3): cold <= 2.0x floor, warm <= 0.5x floor, peak RSS < 500 MB (summed over the
validate process and its worker processes),
schedule expansion <= +10% of cold.

    python bench/validate.py [--tasks 10000] [--repeat 3] [--root bench/.work/repo]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import generate

FLOOR = r"""
import os, sys, yaml
root = sys.argv[1]
count = 0
paths = [os.path.join(root, "platform.yaml")]
for folder in ("templates", "audiences", "creatives", "campaigns"):
    for directory, _, names in os.walk(os.path.join(root, folder)):
        paths.extend(os.path.join(directory, n) for n in names if n.endswith((".yaml", ".yml")))
for path in paths:
    with open(path, "rb") as handle:
        yaml.load(handle.read(), Loader=yaml.CSafeLoader)
    count += 1
print(count)
"""


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and its children (the validation workers), in KB (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            children = [int(child) for child in listing.read().split()]
    except OSError:
        children = []
    return _rss_kb(pid) + sum(_rss_kb(child) for child in children)


def run(command: list[str]) -> tuple[float, int, int]:
    """Wall time, exit code and peak RSS in MB of one process: the sum over the process and its
    worker processes, sampled every 50 ms (and never less than the largest single process)."""
    import threading

    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak_tree = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak_tree[0] = max(peak_tree[0], _tree_rss_kb(process.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode not in (0, 1):
        sys.exit(f"command failed: {' '.join(command)}\n{process.stderr.read().decode()}")
    return elapsed, process.returncode, max(usage.ru_maxrss, peak_tree[0]) // 1024


def best(times: list[tuple[float, int, int]]) -> tuple[float, int, int]:
    return min(times, key=lambda item: item[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--creatives", type=int, default=10_000)
    parser.add_argument("--audiences", type=int, default=1_000)
    parser.add_argument("--templates", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the best is kept")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent / ".work" / "validate-repo")
    arguments = parser.parse_args()

    generate(arguments.root, arguments.tasks, arguments.creatives, arguments.audiences, arguments.templates)
    files = sum(1 for _ in arguments.root.rglob("*.yaml"))
    print(f"synthetic repository: {files:,} YAML files at {arguments.root}")
    campaigns = [sys.executable, "-m", "engine", "validate", "--repo", str(arguments.root)]
    cache = arguments.root.parent / "validate-cache"  # the bench's own caches (the key stays the user's)
    os.environ["CAMPAIGNS_CACHE_DIR"] = str(cache)

    floors, colds, warms, no_schedule = [], [], [], []
    # the same process with the schedule expansion of the no-occurrences rule replaced by a no-op
    without_schedules = [
        sys.executable,
        "-c",
        "import sys; import engine.validation.filecheck as f; f._check_occurrences = lambda *a: None; "
        "from engine.cli import main; main(sys.argv[1:])",
        "validate",
        "--repo",
        str(arguments.root),
    ]
    for _ in range(arguments.repeat):
        floors.append(run([sys.executable, "-c", FLOOR, str(arguments.root)]))
        shutil.rmtree(cache, ignore_errors=True)
        colds.append(run(campaigns))
        warms.append(run(campaigns))
        shutil.rmtree(cache, ignore_errors=True)
        no_schedule.append(run(without_schedules))
    shutil.rmtree(cache, ignore_errors=True)
    floor, cold, warm, bare = best(floors), best(colds), best(warms), best(no_schedule)
    if cold[1] != 0:
        sys.exit("the synthetic repository did not validate clean")

    print(f"floor  (read + CSafeLoader parse, one process): {floor[0]:7.2f} s   peak RSS {floor[2]:4d} MB")
    print(f"cold   campaigns validate (no cache):           {cold[0]:7.2f} s   peak RSS {cold[2]:4d} MB   {cold[0] / floor[0]:.2f}x floor (goal <= 2.0x)")
    print(f"warm   campaigns validate (unchanged repo):     {warm[0]:7.2f} s   peak RSS {warm[2]:4d} MB   {warm[0] / floor[0]:.2f}x floor (goal <= 0.5x)")
    print(f"cold without schedule expansion:                {bare[0]:7.2f} s   schedules add {100 * (cold[0] - bare[0]) / bare[0]:+.1f}% (goal <= +10%)")
    print(f"workers: {os.cpu_count()} cores; best of {arguments.repeat} runs each")


if __name__ == "__main__":
    main()
