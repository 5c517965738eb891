"""Benchmark: what the cap forecast adds to `campaigns plan`, against a COUNT(*) floor.

A 1,000,000-user directory, 20 running tasks (5 of them SMS; daily, every other day and weekly,
each over a ``where`` audience), one task edited so the plan has a change. Timed as whole
processes in the same run:

* plan7: ``campaigns plan --format json --now NOW`` (``--forecast-days 7``, the default);
* plan0: the same with ``--forecast-days 0``;
* extra = plan7 - plan0 (what the forecast costs);
* floor: one ``COUNT(*)`` over the same membership query (the UNION ALL of the 20 tasks'
  compiled audiences: every membership row the forecast reads), timed in-process.

Goal (issue 14): extra <= 5 s on SQLite, and extra <= 3x the floor.

    python bench/forecast.py [--users 1000000] [--backends sqlite,postgresql] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from fanout import CITIES, generate_users, pg_database, timed  # noqa: E402

NOW = "2027-01-04T00:00:00Z"

PLATFORM = """\
main_branch: main
sites:
  ph:
    name: Philippines wallet
    timezone: Asia/Manila
    channels: [push, sms]
    mini_programs: [shop]
    testers: [u-tester-1]
    limits: {max_per_user_per_day: 3}
    sms: {price_per_segment: 0.0123, currency: USD, max_segments: 3}
providers:
  default: {type: outbox, path: .campaigns/outbox}
approval:
  forbid_self_merge: false
"""
PUSH_TEMPLATE = """\
name: Promo push
channel: push
status: approved
fields:
  title: {required: true}
  content: {required: true}
  redirection: {required: true}
variables:
  first_name: {example: Maria}
"""
SMS_TEMPLATE = """\
name: Promo SMS
channel: sms
status: approved
fields:
  content: {required: true}
variables:
  first_name: {example: Maria}
"""
PUSH_CREATIVE = """\
name: Push {n}
template: push-promo
title: "Hi {{{{ user.first_name | default('there') }}}}"
content: "Offer {n} for you"
redirection: https://shop.example.com/{n}
"""
SMS_CREATIVE = """\
name: SMS {n}
template: sms-promo
content: "Hi {{{{ user.first_name | default('there') }}}}, offer {n} is waiting in the shop app. Reply STOP to opt out."
"""
TASK = """\
name: Task {n}
site: ph
mini_program: shop
channel: {channel}
schedule:
  start_date: 2027-01-01
  finish_date: 2027-03-31
  windows:
    - {{start: "09:00", finish: "12:00"}}
  recurrence: {recurrence}
audiences: [a{n}]
creatives: [c{n}]
status: active
"""
RECURRENCES = ["{type: daily, every: 1}", "{type: daily, every: 2}", "{type: weekly, days: [monday, thursday]}"]


def audience(n: int) -> str:
    """Where rules of several shapes, each selecting 10-60% of the directory."""
    city = CITIES[n % len(CITIES)]
    rules = [
        f"all: [{{attr: city, eq: {city}}}]",
        f"all: [{{attr: points, gte: {1000 + 150 * n}}}]",
        f"any: [{{all: [{{attr: segment, eq: vip}}]}}, {{all: [{{attr: city, in: [{city}, Cebu]}}]}}]",
        f"all: [{{attr: segment, ne: new}}, {{attr: points, lt: {2000 + 100 * n}}}]",
    ]
    return f"name: Audience {n}\nsite: ph\nsource:\n  where:\n    {rules[n % len(rules)]}\n"


def write_repo(root: Path, tasks: int = 20, sms: int = 5) -> None:
    if root.exists():
        shutil.rmtree(root)
    files = {
        "platform.yaml": PLATFORM,
        "templates/push-promo.yaml": PUSH_TEMPLATE,
        "templates/sms-promo.yaml": SMS_TEMPLATE,
        "campaigns/bench/campaign.yaml": "name: Bench\ndescription: forecast benchmark\n",
    }
    for n in range(tasks):
        channel = "sms" if n < sms else "push"
        files[f"audiences/a{n}.yaml"] = audience(n)
        files[f"creatives/c{n}.yaml"] = (SMS_CREATIVE if channel == "sms" else PUSH_CREATIVE).format(n=n)
        files[f"campaigns/bench/t{n}.yaml"] = TASK.format(n=n, channel=channel, recurrence=RECURRENCES[n % 3])
    for relative, text in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


PREPARE = r"""
import sys, time
from engine.validation.pipeline import load_repository
from engine.delivery.directory import import_users
from engine.plan.desired import Desired
from engine.state import PilotResult, StateStore
url, root, users = sys.argv[1:4]
repository = load_repository(root)
desired = Desired(repository)
with StateStore.open(url, root) as store:
    import_users(store, users)
    for task_id, task in repository.tasks.items():
        store.record_pilot_test(task_id, desired.task_content_digest(task_id),
                                [PilotResult("u-tester-1", task.data["channel"], True, "ok")])
"""

FLOOR = r"""
import sys, time
from engine.config.models import Platform
from engine.validation.pipeline import load_repository
from engine.delivery.audiences import task_membership
from engine.delivery.forecast import count_day, count_floor
from engine.plan.desired import Desired
from engine.state import StateStore
url, root, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3])
repository = load_repository(root)
desired = Desired(repository)
audiences = {rid: desired.body(f"audience.{rid}") for rid in repository.audiences}
with StateStore.open(url, root, create=False) as store:
    memberships = [task_membership(store, desired.body(f"task.{t}"), audiences, task_id=t) for t in sorted(repository.tasks)]
    best, rows = None, None
    for _ in range(repeat):
        started = time.perf_counter(); rows = count_floor(store, memberships); took = time.perf_counter() - started
        best = took if best is None else min(best, took)
    day = None
    for _ in range(repeat):
        started = time.perf_counter(); counted = count_day(store, memberships, 3); took = time.perf_counter() - started
        day = took if day is None else min(day, took)
print(best, rows, day, counted.messages, counted.users, counted.capped)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the fastest is kept")
    parser.add_argument("--pg", default=os.environ.get("CAMPAIGNS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--root", type=Path, default=HERE / ".work" / "forecast")
    arguments = parser.parse_args()

    root = arguments.root
    users_csv = root.parent / f"fanout-users-{arguments.users}.csv"  # the same file bench/fanout.py uses
    root.parent.mkdir(parents=True, exist_ok=True)
    if not users_csv.exists():
        generate_users(users_csv, arguments.users)
    env = {k: v for k, v in os.environ.items() if k != "CAMPAIGNS_STATE"}
    env["PYTHONPATH"] = str(HERE.parent)
    print(f"{arguments.users:,} users, 20 running tasks (5 SMS), 7 forecast days, {os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.2f}")
    for backend in arguments.backends.split(","):
        write_repo(root)
        drop = None
        if backend == "sqlite":
            state_url = f"sqlite:///{root}/.campaigns/state.db"
        else:
            state_url, drop = pg_database(arguments.pg)
        try:
            timed([sys.executable, "-c", PREPARE, state_url, str(root), str(users_csv)], env)
            timed([sys.executable, "-m", "engine", "apply", "--approved-by", "bench", "--reason", "bench",
                   "--state", state_url, "--repo", str(root)], env)
            task = root / "campaigns/bench/t7.yaml"
            task.write_text(task.read_text().replace("name: Task 7", "name: Task 7 renamed"))
            plan = [sys.executable, "-m", "engine", "plan", "--format", "json", "--now", NOW, "--state", state_url,
                    "--repo", str(root)]
            with_forecast, without = [], []
            document = None
            for _ in range(arguments.repeat):
                seconds, _, out = timed(plan + ["--forecast-days", "7"], env)
                with_forecast.append(seconds)
                document = json.loads(out)
                without.append(timed(plan + ["--forecast-days", "0"], env)[0])
            _, _, out = timed([sys.executable, "-c", FLOOR, state_url, str(root), str(arguments.repeat)], env)
            floor_s, rows, day_s, messages, users, capped = out.split()
        finally:
            if drop is not None:
                drop()
        plan7, plan0 = min(with_forecast), min(without)
        extra, floor = plan7 - plan0, float(floor_s)
        sets = len({tuple(e["tasks"]) for e in document["forecast"] if e["tasks"]})
        goal = extra <= 3 * floor and (backend != "sqlite" or extra <= 5.0)
        print(
            f"{backend:<10} plan --forecast-days 7: {plan7:.2f} s, --forecast-days 0: {plan0:.2f} s, extra {extra:.2f} s; "
            f"floor (one COUNT(*) over the 20 tasks' memberships, {int(rows):,} rows): {floor:.2f} s; "
            f"extra = {extra / floor:.2f}x floor (goal <= 3x{', <= 5 s' if backend == 'sqlite' else ''}) "
            f"[{'ok' if goal else 'MISSED'}]; {sets} distinct task sets in 7 days; one day of all 20 tasks in SQL "
            f"{float(day_s):.2f} s ({int(messages):,} messages, {int(users):,} users, {int(capped):,} capped); best of {arguments.repeat}"
        )


if __name__ == "__main__":
    main()
