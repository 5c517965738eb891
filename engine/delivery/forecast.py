"""The daily cap forecast, counted in the database: messages due, users, and users capped.

For one site-local day and the set of tasks due on it, each user receives one message per task
whose membership holds them; the site's ``max_per_user_per_day`` holds back every message past
the cap. One query answers a whole set of tasks, whatever the number of days that share it:

- members in the directory: ONE scan of ``campaigns_users`` with, per task, a 0/1 flag (the
  task's compiled predicate); a user's message count is the sum of the flags. No row leaves
  the database, and there is no GROUP BY (a scan with a few predicates is what the floor, a
  ``COUNT(*)`` over the same membership, costs too);
- members outside the directory (listed by ``users:``/CSV audiences): the UNION ALL of each
  task's outside ids tagged with the task's number, grouped by user (small: lists only).

Both parts are disjoint (a user is in the directory or not), so their sums add up.
Opt-outs are not subtracted: the forecast counts members, as the audience sizes do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.delivery.audiences import Membership
    from engine.state import StateStore


@dataclass(frozen=True)
class DayCount:
    """What a set of tasks due on one day amounts to. ``capped``: users the cap holds back at
    least one message of; ``capped_messages``: messages held back; ``capped_by_task[i]``: users
    of task ``i`` among the capped (they may keep this task's message: the cap serves whichever
    task reaches them first)."""

    messages: int
    users: int
    capped: int
    capped_messages: int
    capped_by_task: tuple[int, ...]


def _flag(expr: Any) -> Any:
    from sqlalchemy import case

    return case((expr, 1), else_=0)


def _sum(expr: Any) -> Any:
    from sqlalchemy import func

    return func.coalesce(func.sum(expr), 0)


def _totals(per_user: Any, count: Any, flags: Sequence[Any], cap: int | None) -> list[Any]:
    """messages, users, capped, capped messages, then capped users per task, over ``per_user``."""
    from sqlalchemy import and_, func, literal

    if cap is None:
        zero = literal(0)
        return [_sum(count), func.count(), zero, zero, *[zero for _ in flags]]
    over = count > cap
    return [
        _sum(count),
        func.count(),
        _sum(_flag(over)),
        _sum(_flag(over) * (count - cap)),
        *[_sum(_flag(and_(over, flag == 1))) for flag in flags],
    ]


def count_day(store: StateStore, memberships: Sequence[Membership], cap: int | None) -> DayCount:
    """Messages, users and capped users when every task of ``memberships`` is due the same day."""
    from sqlalchemy import func, literal, or_, select, union_all

    n = len(memberships)
    if n == 0:
        return DayCount(0, 0, 0, 0, ())
    flagged = select(*[_flag(m.directory).label(f"t{i}") for i, m in enumerate(memberships)]).where(
        or_(*[m.directory for m in memberships])
    ).subquery("flagged")
    flags = [flagged.c[f"t{i}"] for i in range(n)]
    total = flags[0]
    for flag in flags[1:]:
        total = total + flag
    inside = select(*_totals(flagged, total, flags, cap))
    rows = [None, None]
    outside_parts = [
        select(m.outside.subquery(f"o{i}").c.user_id.label("user_id"), literal(i).label("t"))
        for i, m in enumerate(memberships)
        if m.outside is not None
    ]
    with store.reading() as conn:
        rows[0] = tuple(conn.execute(inside).one())
        if outside_parts:
            tagged = (outside_parts[0] if len(outside_parts) == 1 else union_all(*outside_parts)).subquery("tagged")
            grouped = (
                select(
                    tagged.c.user_id,
                    func.count().label("n"),
                    *[func.max(_flag(tagged.c.t == i)).label(f"t{i}") for i in range(n)],
                )
                .group_by(tagged.c.user_id)
                .subquery("grouped")
            )
            rows[1] = tuple(
                conn.execute(
                    select(*_totals(grouped, grouped.c.n, [grouped.c[f"t{i}"] for i in range(n)], cap))
                ).one()
            )
    sums = [int(v or 0) for v in rows[0]]
    if rows[1] is not None:
        sums = [a + int(b or 0) for a, b in zip(sums, rows[1])]
    return DayCount(sums[0], sums[1], sums[2], sums[3], tuple(sums[4:]))


def count_floor(store: StateStore, memberships: Sequence[Membership]) -> int:
    """One ``COUNT(*)`` over the same memberships (UNION ALL of each task's members): the least a
    database can do to read them, the floor that ``bench/forecast.py`` prints next to the forecast."""
    from sqlalchemy import func, select, union_all

    from engine.delivery import directory_tables as dt

    u = dt.users
    parts = [select(u.c.user_id).where(m.directory) for m in memberships]
    parts += [m.outside for m in memberships if m.outside is not None]
    if not parts:
        return 0
    members = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("members")
    with store.reading() as conn:
        return int(conn.execute(select(func.count()).select_from(members)).scalar_one())
