"""Benchmark: one occurrence fanned out through the wallet's message API with requests in flight.

The sandbox gateway (tests/helpers/sandbox_gateway.py) runs in its own process at a fixed
latency (default 50 ms). For each concurrency (default 1, 8 and 32) a fresh SQLite state gets
``--users`` users and one running push task delivered through the gateway (bearer token,
``rate_per_second`` = ``--rate``); one executor process then runs a pass (``Executor.run_pass``,
what ``campaigns run --once`` does) and reports, in the same run:

* msg/s of the pass against its floor min(rate_per_second, concurrency x 20 / latency): the
  most any client could do with that many requests of 20 in flight;
* the executor's CPU per message (user + system of its process during the pass) and peak RSS,
  and the sandbox's own CPU per message (``gw us/msg``, from /proc): a sandbox busy near 100% of
  a core would be the bottleneck, not the executor;
* then a run at 0 ms latency (``--fast-concurrency``, no rate limit): the executor's own ceiling,
  and its floor: the gateway's HTTP client alone (``aionet.Client``) posting ready-made requests
  of 20 in a loop at that concurrency against the same sandbox.

It checks that the gateway got every user exactly once. Goals (issue 16): >= 0.8x the floor at
concurrency 8; >= 15,000 msg/s at 0 ms latency, in one process.

    python bench/gateway.py [--users 100000] [--latency-ms 50] [--concurrency 1,8,32] [--rate 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
HELPERS = HERE.parent / "tests" / "helpers"
TOKEN = "bench-token"
TOKEN_ENV = "CAMPAIGNS_BENCH_GATEWAY_TOKEN"
NOW = "2026-12-01T09:05:00+08:00"

PASS = r"""
import datetime as dt, json, resource, sys, time
from pathlib import Path
from engine.clock import Clock
from engine.delivery.executor import Executor
from engine.state import StateStore
url, repo, now = sys.argv[1], sys.argv[2], sys.argv[3]
with StateStore.open(url, repo) as store:
    with Executor(store, repo, clock=Clock(dt.datetime.fromisoformat(now))) as executor:
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        summary = executor.run_pass()
        elapsed = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
print(json.dumps({"elapsed": elapsed, "cpu": cpu, "sent": summary.counts.sent, "failed": summary.counts.failed,
                  "rss_mb": after.ru_maxrss / 1024, "line": summary.line()}))
"""

BARE = r"""
import asyncio, sys, time
from engine.delivery.providers import Message, aionet
from engine.delivery.providers.gateway import message_content, request_body, request_row
url, token, concurrency, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rows = [request_row(m, "PUSH", message_content(m)) for m in (
    Message(f"bare:{i:07d}", "bare", "once", f"b{i:07d}", "push", "c1", "Hi", "Body", "https://shop.example/p") for i in range(count))]
bodies = iter([request_body(rows[start : start + 20]) for start in range(0, count, 20)])
async def main() -> float:
    client = aionet.Client(url, concurrency, {"Content-Type": "application/json; charset=UTF-8", "Authorization": f"Bearer {token}"})
    async def worker() -> None:
        for body in bodies:
            status, _, _ = await client.post(body, None, 1 << 20)
            assert status == 200
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await client.aclose()
    return elapsed
print(count / asyncio.run(main()))
"""
"""The floor of the 0 ms run: the gateway's HTTP client alone posting ready-made bodies of 20 in a
loop at the same concurrency against the same sandbox (no ledger, no rendering, no retries)."""


def bare_client(base: str, concurrency: int, count: int) -> float:
    done = subprocess.run(
        [sys.executable, "-c", BARE, f"{base}/v2/platform/message/send", TOKEN, str(concurrency), str(count)], capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"the bare client loop failed:\n{done.stderr[-3000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def start_sandbox(latency_ms: float, folder: Path) -> tuple[subprocess.Popen, str]:
    port_file = folder / f"sandbox-{latency_ms:g}.port"
    port_file.unlink(missing_ok=True)
    process = subprocess.Popen(
        [sys.executable, str(HELPERS / "sandbox_gateway.py"), "--latency-ms", str(latency_ms), "--token", TOKEN, "--port-file", str(port_file)],
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])},
    )
    deadline = time.monotonic() + 30
    while not port_file.exists() or not port_file.read_text():
        if time.monotonic() > deadline or process.poll() is not None:
            sys.exit("the sandbox gateway did not start")
        time.sleep(0.05)
    return process, f"http://127.0.0.1:{port_file.read_text()}"


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; NaN where /proc is not there."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def counters(base: str) -> dict:
    with urllib.request.urlopen(f"{base}/_sandbox/stats", timeout=10) as reply:
        return json.loads(reply.read())


def prepare(folder: Path, users: int, url: str, concurrency: int, rate: int | None) -> str:
    """A fresh SQLite state with ``users`` users and one running push task through ``url``."""
    sys.path.insert(0, str(HELPERS))
    from delivery_state import import_users, platform_body, seed, task_body, write_users

    from engine.state import StateStore

    folder.mkdir(parents=True, exist_ok=True)
    state_url = f"sqlite:///{folder}/state.db"
    write_users(folder / "users.csv", users)
    provider = {"type": "gateway", "url": url, "token_env": TOKEN_ENV, "concurrency": concurrency, "timeout": 10}
    platform = platform_body(providers={"push": provider}, batch_size=5000, rates={"push": rate} if rate else None)
    with StateStore.open(state_url, folder) as store:
        import_users(store, folder / "users.csv")
        seed(store, platform=platform, tasks={folder.name: task_body(windows=[("09:00", "21:00")])})  # own ids per run
    return state_url


def one_pass(state_url: str, folder: Path) -> dict:
    env = {**os.environ, TOKEN_ENV: TOKEN}
    done = subprocess.run([sys.executable, "-c", PASS, state_url, str(folder), NOW], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"the executor failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(
    label: str, users: int, latency_ms: float, concurrency: int, rate: int | None, base: str, folder: Path, sandbox_pid: int
) -> tuple[float, float]:
    state_url = prepare(folder, users, f"{base}/v2/platform/message/send", concurrency, rate)
    before = counters(base)
    sandbox_before = process_cpu(sandbox_pid)
    result = one_pass(state_url, folder)
    sandbox_cpu = process_cpu(sandbox_pid) - sandbox_before
    after = counters(base)
    delivered = after["delivered"] - before["delivered"]
    ok = result["sent"] == users and delivered == users and after["conflicts"] == before["conflicts"]
    rate_s = result["sent"] / result["elapsed"]
    ceiling = concurrency * 20 / (latency_ms / 1000) if latency_ms else float("inf")
    floor = min(rate or float("inf"), ceiling)
    ratio = rate_s / floor if floor != float("inf") else float("nan")
    print(
        f"{label:<22} {concurrency:>4} {rate_s:>10,.0f} {floor if floor != float('inf') else float('nan'):>10,.0f} {ratio:>6.2f}x"
        f" {result['cpu'] / max(1, result['sent']) * 1e6:>10,.0f} {sandbox_cpu / max(1, result['sent']) * 1e6:>10,.0f}"
        f" {result['rss_mb']:>8,.0f}  {'ok' if ok else 'CHECK FAILED'}"
        f"  ({result['sent']:,} sent in {result['elapsed']:.1f} s, {after['max_in_flight']} max in flight at the gateway,"
        f" sandbox busy {sandbox_cpu / result['elapsed']:.0%} of a core)",
        flush=True,
    )
    if not ok:
        print(f"    sent {result['sent']:,}, delivered {delivered:,}, conflicts {after['conflicts'] - before['conflicts']}: {result['line']}")
    return rate_s, ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000, help="messages per fan-out")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="the sandbox's fixed latency")
    parser.add_argument("--concurrency", default="1,8,32", help="concurrencies to measure, comma separated")
    parser.add_argument("--rate", type=int, default=20_000, help="rate_per_second of the push channel")
    parser.add_argument("--fast-concurrency", type=int, default=32, help="concurrency of the 0 ms run (0: skip it)")
    parser.add_argument("--fast-users", type=int, default=None, help="messages of the 0 ms run (default: --users)")
    args = parser.parse_args()
    print(f"{args.users:,} messages, sandbox gateway in its own process, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    print(f"{'run':<22} {'conc':>4} {'msg/s':>10} {'floor':>10} {'ratio':>7} {'cpu us/msg':>10} {'gw us/msg':>10} {'RSS MB':>8}")
    goals: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        root = Path(tmp)
        sandbox, base = start_sandbox(args.latency_ms, root)
        try:
            for concurrency in [int(c) for c in args.concurrency.split(",") if c]:
                _, ratio = measure(f"{args.latency_ms:g} ms latency", args.users, args.latency_ms, concurrency, args.rate, base, root / f"c{concurrency}", sandbox.pid)
                if concurrency == 8:
                    goals.append(f"concurrency 8: {ratio:.2f}x the floor (goal >= 0.8x): {'ok' if ratio >= 0.8 else 'MISSED'}")
        finally:
            sandbox.terminate()
            sandbox.wait()
        if args.fast_concurrency:
            sandbox, base = start_sandbox(0, root)
            try:
                rate_s, _ = measure("0 ms latency, no rate", args.fast_users or args.users, 0, args.fast_concurrency, None, base, root / "fast", sandbox.pid)
                bare = bare_client(base, args.fast_concurrency, args.fast_users or args.users)
                print(f"{'0 ms, bare HTTP client':<22} {args.fast_concurrency:>4} {bare:>10,.0f}  (the floor: ready bodies posted in a loop; the pass is {rate_s / bare:.2f}x of it)")
                goals.append(f"0 ms latency: {rate_s:,.0f} msg/s (goal >= 15,000): {'ok' if rate_s >= 15_000 else 'MISSED'}")
            finally:
                sandbox.terminate()
                sandbox.wait()
    for goal in goals:
        print(goal)
    return 0


if __name__ == "__main__":
    sys.exit(main())
