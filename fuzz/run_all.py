"""Run every fuzz target (``fuzz/targets.py``) under atheris, coverage-guided by libFuzzer.

    .venv/bin/python fuzz/run_all.py --seconds 150 [--only NAME ...] [--crashes .fuzz-crashes]

``--seconds`` is the total wall time, split evenly across the targets (each process's start-up,
about ten seconds of instrumenting the engine, counted in); each target runs in its own process
with libFuzzer's ``-timeout=2`` (seconds per input) and ``-rss_limit_mb=300``, so an input over
the time or memory budget is a finding like an exception is. Each starts from a corpus seeded
with the shipped example's files, the GitHub event fixtures (``tests/fixtures/github`` and
``/work/shared/fixtures`` when present), a saved plan of the example and a few gateway replies.
An input that crashes a target is saved under ``--crashes`` (``<target>-crash-<sha1>``) and the
run exits 1; replay one with ``fuzz/run_all.py --replay FILE``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

TARGET_NAMES = ("yaml_file", "jinja", "saved_plan", "github_event", "gateway_reply", "users_csv", "repository")
MAX_LEN = {"repository": 8192, "jinja": 2048}  # bytes per input (others: 65,536)
FIXTURE_DIRS = (PROJECT / "tests" / "fixtures" / "github", Path("/work/shared/fixtures/github"))
GATEWAY_REPLIES = (
    {"result": {"resultStatus": "S", "resultCode": "0", "resultMessage": "ok"},
     "messageSendResults": [{"messageId": "m-1", "success": True}, {"messageId": "m-2", "success": False, "retry": True}]},
    {"result": {"resultStatus": "F", "resultCode": "AUTH", "resultMessage": "bad token"}},
    {"result": {"resultStatus": "U"}},
    {"messageSendResults": [{"messageId": "m-1", "success": True, "error": "x", "code": 7}]},
)


def _example_files() -> list[tuple[str, bytes]]:
    found = []
    for part in ("platform.yaml", "templates", "audiences", "creatives", "campaigns"):
        path = PROJECT / part
        for file in sorted([path] if path.is_file() else path.rglob("*")):
            if file.is_file():
                found.append((str(file.relative_to(PROJECT)), file.read_bytes()))
    return found


def _saved_plan() -> bytes | None:
    """A saved plan of the example against an empty state (the shape ``apply PLAN`` reads)."""
    from engine.plan import planfile
    from engine.plan.planner import compute_plan
    from engine.state.store import StateStore
    from engine.validation.pipeline import load_repository
    from fuzz import targets

    root = targets._work_repository()
    with tempfile.TemporaryDirectory() as folder, StateStore.open(f"sqlite:///{folder}/s.db", root) as store:
        return planfile.dumps(compute_plan(load_repository(root), store, now=targets.NOW, use_cache=False)).encode()


def seeds(name: str) -> list[bytes]:
    """The starting corpus of one target."""
    from fuzz import targets

    files = _example_files()
    if name == "yaml_file":
        kinds = {"platform.yaml": "platform", "templates": "template", "audiences": "audience", "creatives": "creative"}
        out = []
        for path, raw in files:
            if not path.endswith(".yaml"):
                continue
            top = path.split("/")[0]
            kind = kinds.get(top) or ("campaign" if path.endswith("/campaign.yaml") else "task")
            out.append(bytes([targets.KINDS.index(kind)]) + raw)
        return out
    if name == "jinja":
        from engine.config import yamlload

        out = [b"{{ user.first_name }}", b"{% if user.points > 100 %}{{ user.points }}{% else %}hi{% endif %}"]
        for path, raw in files:
            if path.startswith("creatives/"):
                data = yamlload.load(raw)
                out.extend(str(data[key]).encode() for key in ("title", "content", "redirection") if key in data)
        return out
    if name == "saved_plan":
        plan = _saved_plan()
        return [plan] if plan else [b"{}"]
    if name == "github_event":
        out = []
        for folder in FIXTURE_DIRS:
            if folder.is_dir():
                out.extend(file.read_bytes() for file in sorted(folder.glob("*.json")))
        return out or [b"{}"]
    if name == "gateway_reply":
        return [json.dumps(reply).encode() for reply in GATEWAY_REPLIES]
    if name == "users_csv":
        return [raw for path, raw in files if path.endswith(".csv")] + [b'user_id,a\nu1,"x\n', b"user_id\nu\x001\n"]
    if name == "repository":
        wanted = list(targets._REPOSITORY_FILES)
        contents = dict(files)
        return [bytes([index]) + contents[path] for index, path in enumerate(wanted) if path in contents]
    raise SystemExit(f"no target {name!r}")


def worker(name: str, libfuzzer_args: list[str]) -> None:
    """Inside the child process: instrument the engine, then hand the target to libFuzzer."""
    import atheris

    with atheris.instrument_imports(include=["engine", "fuzz"]):
        from fuzz import targets

    target = targets.TARGETS[name]
    atheris.Setup([sys.argv[0], *libfuzzer_args], target)
    atheris.Fuzz()


def run_target(name: str, seconds: int, crashes: Path, work: Path) -> tuple[bool, str]:
    """One target for ``seconds``; (crashed, last lines of libFuzzer's report)."""
    corpus = work / name
    corpus.mkdir(parents=True, exist_ok=True)
    for seed in seeds(name):
        (corpus / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    before = set(crashes.glob(f"{name}-*"))
    args = [
        str(corpus),
        f"-max_total_time={seconds}",
        "-timeout=2",
        "-rss_limit_mb=300",
        f"-max_len={MAX_LEN.get(name, 65536)}",
        f"-artifact_prefix={crashes}/{name}-",
        "-print_final_stats=1",
    ]
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--", *args]
    env = {**os.environ, "CAMPAIGNS_WORKERS": "1", "PYTHONHASHSEED": "0"}
    process = subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=seconds + 120)
        code = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        code = -1
    text = output.decode(errors="replace")
    found = set(crashes.glob(f"{name}-*")) - before
    crashed = code != 0 or bool(found)
    lines = [line for line in text.splitlines() if line.strip()]
    if crashed:
        tail = lines[-40:]
    else:
        tail = [line for line in lines if line.startswith(("stat::number_of_executed_units", "Done"))][-2:]
    if found:
        tail.append("saved: " + ", ".join(str(path) for path in sorted(found)))
    return crashed, "\n".join(tail)


def replay(path: Path) -> int:
    """Run one saved input through its target (named by the file's prefix) and show what it raises."""
    from fuzz import targets

    name = next((known for known in sorted(targets.TARGETS, key=len, reverse=True) if path.name.startswith(known + "-")), None)
    if name is None:
        raise SystemExit(f"{path.name} does not start with a target name ({', '.join(targets.TARGETS)})")
    targets.TARGETS[name](path.read_bytes())
    print(f"{path}: {name} returned cleanly")
    return 0


def main() -> int:
    if "--worker" in sys.argv:
        at = sys.argv.index("--worker")
        rest = sys.argv[at + 2 :]
        worker(sys.argv[at + 1], rest[1:] if rest[:1] == ["--"] else rest)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=150, help="total fuzzing time, split across the targets")
    parser.add_argument("--only", nargs="*", choices=TARGET_NAMES, help="targets to run (default: all)")
    parser.add_argument("--crashes", type=Path, default=PROJECT / ".fuzz-crashes", help="where crashing inputs are saved")
    parser.add_argument("--replay", type=Path, help="run one saved input through its target and stop")
    options = parser.parse_args()
    if options.replay:
        return replay(options.replay)
    from fuzz import targets

    names = options.only or list(TARGET_NAMES)
    options.crashes.mkdir(parents=True, exist_ok=True)
    print(f"fuzzing {len(names)} targets in {options.seconds} s; gateway reply parser: {targets.gateway_entry_point()[0]}")
    failures = 0
    overhead = 12.0  # seconds a worker needs besides fuzzing (start-up, seeding); measured as it goes
    deadline = time.monotonic() + options.seconds
    with tempfile.TemporaryDirectory(prefix="campaigns-fuzz-corpus-") as folder:
        for index, name in enumerate(names):
            share = (deadline - time.monotonic()) / (len(names) - index)
            fuzz_seconds = max(int(share - overhead), 3)
            started = time.monotonic()
            crashed, report = run_target(name, fuzz_seconds, options.crashes.resolve(), Path(folder))
            wall = time.monotonic() - started
            overhead = max(wall - fuzz_seconds, 1.0)
            failures += crashed
            summary = report.splitlines()[0] if report and not crashed else ""
            print(f"{name:<14} {'CRASH' if crashed else 'ok':<6} {wall:6.1f} s ({fuzz_seconds} s fuzzing)  {summary}")
            if crashed:
                print(report)
    shutil.rmtree(targets._WORK.get("repo", Path("/nonexistent")), ignore_errors=True)
    print(f"{failures} of {len(names)} targets crashed" if failures else f"no crash in {len(names)} targets")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
