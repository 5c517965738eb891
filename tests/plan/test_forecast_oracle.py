"""The cap forecast (counted in SQL, one query per distinct set of tasks due on a day) against a
naive Python oracle that evaluates every audience rule per user and counts by hand, on a small
random directory with ``where`` rules, ``users:`` lists (some ids outside the directory) and
``include``/``exclude``; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest
from planrepo import SmallRepo, plan_of

from engine.delivery.directory import import_users
from engine.state import StateStore

NOW = dt.datetime(2027, 1, 4, 0, 0, tzinfo=dt.timezone.utc)  # Monday 08:00 in Manila
FIRST = dt.date(2027, 1, 4)
DAYS = 7
CITIES = ["Manila", "Cebu", "Davao"]

PLATFORM = """\
main_branch: main
sites:
  ph:
    name: Philippines wallet
    timezone: Asia/Manila
    channels: [push, sms]
    mini_programs: [shop]
    testers: [u-tester-1]
    limits: {{max_per_user_per_day: {cap}}}
providers:
  default: {{type: outbox, path: .campaigns/outbox}}
approval:
  forbid_self_merge: false
"""


def build(rng: random.Random, root: Path) -> tuple[SmallRepo, list[dict], dict[str, set[str]], dict[str, tuple], int]:
    """A random repository; returns it, the directory rows, each audience's members (by the
    oracle), each task's (audiences, recurrence) and the cap."""
    cap = rng.choice([1, 2])
    repo = SmallRepo(root)
    repo.write("platform.yaml", PLATFORM.format(cap=cap))
    users = [{"user_id": f"u-{n:02d}", "city": rng.choice(CITIES), "points": rng.choice([None, *range(10)])} for n in range(40)]
    members: dict[str, set[str]] = {}
    repo.write("audiences/nopoints.yaml", "name: No points\nsite: ph\nsource:\n  where:\n    all: [{attr: points, exists: false}]\n")
    members["nopoints"] = {u["user_id"] for u in users if u["points"] is None}
    city = rng.choice(CITIES)
    repo.write("audiences/notcity.yaml", f"name: Not city\nsite: ph\nsource:\n  where:\n    all: [{{attr: city, ne: {city}}}, {{attr: points, lt: 7}}]\n")
    members["notcity"] = {u["user_id"] for u in users if u["city"] != city and u["points"] is not None and u["points"] < 7}
    for index in range(4):  # where audiences
        city, points = rng.choice(CITIES), rng.randrange(10)
        audience = f"w{index}"
        repo.write(
            f"audiences/{audience}.yaml",
            f"name: W{index}\nsite: ph\nsource:\n  where:\n    any:\n"
            f"      - all: [{{attr: city, eq: {city}}}]\n      - all: [{{attr: points, gte: {points}}}]\n",
        )
        members[audience] = {u["user_id"] for u in users if u["city"] == city or (u["points"] is not None and u["points"] >= points)}
    for index in range(2):  # lists, with ids the directory does not have
        ids = sorted(rng.sample([u["user_id"] for u in users] + [f"x-{n}" for n in range(6)], 8))
        audience = f"l{index}"
        repo.write(f"audiences/{audience}.yaml", f"name: L{index}\nsite: ph\nsource:\n  users: [{', '.join(ids)}]\n")
        members[audience] = set(ids)
    repo.write("audiences/mix.yaml", "name: Mix\nsite: ph\nsource:\n  include: [w0, l0]\n  exclude: [w1]\n")
    members["mix"] = (members["w0"] | members["l0"]) - members["w1"]
    repo.write("audiences/everyone.yaml", "name: Everyone\nsite: ph\nsource:\n  users: [u-00]\n")
    members["everyone"] = {"u-00"}
    tasks: dict[str, tuple] = {}
    for index in range(5):
        chosen = rng.sample(sorted(members), rng.choice([1, 2]))
        every = rng.choice([1, 2, 3])
        start = FIRST + dt.timedelta(days=rng.randrange(-2, 3))
        repo.task(f"t{index}", audiences=", ".join(chosen), start=start.isoformat(), recurrence=f"{{type: daily, every: {every}}}")
        tasks[f"t{index}"] = (chosen, every, start)
    repo.task("flash-push", status="paused")  # paused: not in the forecast
    repo.task("once", audiences="w2", start=(FIRST + dt.timedelta(days=1)).isoformat(), recurrence="{type: one_time}")
    tasks["once"] = (["w2"], None, FIRST + dt.timedelta(days=1))
    return repo, users, members, tasks, cap


def due(task: tuple, day: dt.date) -> bool:
    _, every, start = task
    if every is None:  # one_time: due on the first day of its range
        return day == start
    return day >= start and (day - start).days % every == 0


def oracle(members: dict[str, set[str]], tasks: dict[str, tuple], cap: int) -> list[tuple]:
    out = []
    for offset in range(DAYS):
        day = FIRST + dt.timedelta(days=offset)
        counts: dict[str, int] = {}
        for task in tasks.values():
            if due(task, day):
                for user in set().union(*(members[a] for a in task[0])):
                    counts[user] = counts.get(user, 0) + 1
        messages = sum(counts.values())
        capped = sum(1 for n in counts.values() if n > cap)
        held = sum(n - cap for n in counts.values() if n > cap)
        out.append((day.isoformat(), messages, len(counts), capped, held))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_forecast_matches_a_naive_oracle(tmp_path, state_url, seed):
    rng = random.Random(seed)
    repo, users, members, tasks, cap = build(rng, tmp_path / "repo")
    csv = tmp_path / "users.csv"
    csv.write_text("user_id,city,points\n" + "".join(
        f"{u['user_id']},{u['city']},{'' if u['points'] is None else u['points']}\n" for u in users
    ))
    with StateStore.open(state_url, repo.root) as store:
        import_users(store, csv)
    plan = plan_of(repo.root, state_url, now=NOW, forecast_days=DAYS)
    got = [(e["date"], e["messages"], e["users"], e["capped"], e["capped_messages"]) for e in plan.forecast]
    assert got == oracle(members, tasks, cap)
    # every task change carries the oracle's size
    for task_id, (chosen, _, _) in tasks.items():
        assert plan.change(f"task.{task_id}").audience_size == {
            "before": None, "after": len(set().union(*(members[a] for a in chosen)))
        }
    assert "flash-push" not in {t for e in plan.forecast for t in e["tasks"]}


def test_one_grouped_query_for_the_whole_forecast(tmp_path, state_url, monkeypatch):
    """Seven days, with different sets of tasks due, are one grouped query, not one per day."""
    from engine.delivery import forecast

    calls = []
    original = forecast.combinations
    monkeypatch.setattr(forecast, "combinations", lambda *a, **k: calls.append(1) or original(*a, **k))
    repo = SmallRepo(tmp_path / "repo")
    repo.task("flash-push", start="2027-01-01", recurrence="{type: daily, every: 1}")
    repo.task("other-push", start="2027-01-04", recurrence="{type: daily, every: 3}")
    csv = tmp_path / "users.csv"
    csv.write_text("user_id,city\nu-1,A\nu-2,B\n")
    with StateStore.open(state_url, repo.root) as store:
        import_users(store, csv)
    plan = plan_of(repo.root, state_url, now=NOW, forecast_days=DAYS)
    # everyone: u-1, u-2, u-tester-1; other-push on Jan 4, 7, 10
    assert [e["messages"] for e in plan.forecast] == [6, 3, 3, 6, 3, 3, 6]
    assert len({tuple(e["tasks"]) for e in plan.forecast}) == 2
    assert len(calls) == 1
