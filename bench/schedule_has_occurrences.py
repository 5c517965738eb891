"""How much `has_occurrences` (the `no-occurrences` rule) costs per task.

Prints µs/task over a varied set of 10,000 typical schedules, next to a floor measured in the
same run: ``Schedule.model_validate`` of the same schedules, which the `no-occurrences` rule pays
anyway to get a typed schedule (engine/validation/filecheck.py).
Run: python bench/schedule_has_occurrences.py
"""

from __future__ import annotations

import datetime as dt
import random
import time

from engine.config.models import Schedule
from engine.config.names import WEEKDAYS
from engine.schedule.occurrences import has_occurrences


def schedules(count: int, seed: int = 7) -> list[Schedule]:
    rng = random.Random(seed)
    result = []
    for _ in range(count):
        start = dt.date(2026, 1, 1) + dt.timedelta(days=rng.randrange(365))
        finish = start + dt.timedelta(days=rng.randrange(0, 400))
        kind = rng.choice(["one_time", "daily", "weekly", "monthly"])
        recurrence: dict = {"type": kind}
        if kind == "daily":
            recurrence["every"] = rng.choice([1, 1, 2, 3, 7])
        elif kind == "weekly":
            recurrence["days"] = rng.sample(WEEKDAYS, rng.randint(1, 3))
            recurrence["every"] = rng.choice([1, 1, 2])
        elif kind == "monthly":
            recurrence["day"] = rng.choice([1, 15, 28, 29, 30, 31, "last"])
        result.append(
            Schedule(
                start_date=start,
                finish_date=finish,
                windows=[{"start": "09:00", "finish": "11:30"}, {"start": "18:00", "finish": "21:00"}],
                do_not_disturb=rng.sample(WEEKDAYS, rng.choice([0, 0, 1, 2])),
                recurrence=recurrence,
            )
        )
    return result


def best_of(runs: int, function) -> float:
    best = float("inf")
    for _ in range(runs):
        began = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - began)
    return best


def main() -> None:
    tasks = schedules(10_000)
    count = len(tasks)
    raw = [s.model_dump() for s in tasks]
    floor = best_of(5, lambda: [Schedule.model_validate(data) for data in raw])
    spent = best_of(5, lambda: [has_occurrences(s) for s in tasks])
    delivering = sum(has_occurrences(s) for s in tasks)
    print(f"has_occurrences: {spent / count * 1e6:.2f} µs/task over {count} tasks ({delivering} deliver)")
    print(f"floor (Schedule.model_validate of the same schedules): {floor / count * 1e6:.2f} µs/task")


if __name__ == "__main__":
    main()
