"""The cap forecast (counted in SQL, one query per distinct set of tasks due on a day) against a
naive Python oracle that evaluates every audience rule per user and counts by hand, on a small
random directory with ``where`` rules, ``users:`` lists (some ids outside the directory) and
``include``/``exclude``; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from repos import SmallRepo, plan_of

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



@settings(max_examples=200, deadline=None)
@given(
    combos=st.dictionaries(st.tuples(st.integers(0, (1 << 70) - 1)).map(lambda m: (m[0] & ((1 << 60) - 1), m[0] >> 60)),
                           st.integers(1, 50), max_size=30),
    due=st.lists(st.integers(0, 69), unique=True, max_size=12),
    cap=st.one_of(st.none(), st.integers(1, 4)),
)
def test_tally_of_combinations_is_counting_users_one_by_one(combos, due, cap):
    """``tally`` (any day's totals from users per combination of tasks, 60 tasks a mask column)
    against expanding every combination into its users and counting them one by one."""
    from engine.delivery.forecast import MASK_BITS, tally

    messages = users = capped = held = 0
    by_task = [0] * len(due)
    for masks, count in combos.items():
        for _ in range(count):
            mine = [i for i, task in enumerate(due) if masks[task // MASK_BITS] >> (task % MASK_BITS) & 1]
            if not mine:
                continue
            messages += len(mine)
            users += 1
            if cap is not None and len(mine) > cap:
                capped += 1
                held += len(mine) - cap
                for i in mine:
                    by_task[i] += 1
    got = tally(combos, due, cap)
    assert (got.messages, got.users, got.capped, got.capped_messages, list(got.capped_by_task)) == (
        messages, users, capped, held, by_task
    )


def test_more_tasks_than_one_mask_column_holds(tmp_path, state_url):
    """65 tasks on a day: their bits span two BIGINT mask columns (60 a column)."""
    from engine.delivery.audiences import task_membership
    from engine.delivery.forecast import count_day

    csv = tmp_path / "users.csv"
    csv.write_text("user_id,points\n" + "".join(f"u-{n:02d},{n}\n" for n in range(70)) + "x-out,\n")
    audiences = {f"p{k}": {"site": "ph", "source": {"where": {"all": [{"attr": "points", "gte": k}]}}} for k in range(65)}
    audiences["listed"] = {"site": "ph", "source": {"users": ["u-01", "ghost-1", "ghost-2"]}}
    with StateStore.open(state_url, tmp_path) as store:
        import_users(store, csv)
        tasks = [{"audiences": [f"p{k}"]} for k in range(64)] + [{"audiences": ["p64", "listed"]}]
        memberships = [task_membership(store, body, audiences) for body in tasks]
        counted = count_day(store, memberships, 3)
    # user u-n (n < 70) is in tasks k <= min(n, 63), plus task 64 when n >= 64 or n == 1; ghosts in task 64
    per_user = [min(n, 63) + 1 + (1 if n >= 64 or n == 1 else 0) for n in range(70)] + [1, 1]
    assert counted.messages == sum(per_user)
    assert counted.users == len(per_user)
    assert counted.capped == sum(1 for n in per_user if n > 3)
    assert counted.capped_messages == sum(n - 3 for n in per_user if n > 3)
    assert counted.capped_by_task[64] == sum(1 for n in range(70) if (n >= 64 or n == 1) and per_user[n] > 3)
