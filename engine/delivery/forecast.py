"""The daily cap forecast, counted in the database: messages due, users, and users capped.

For one site-local day and the set of tasks due on it, each user receives one message per task
whose membership holds them; the site's ``max_per_user_per_day`` holds back every message past
the cap. ``combinations`` counts, in one grouped query over every task of the forecast, how many
users belong to each combination of tasks; ``tally`` turns that into any day's figures (the
tasks due that day are a subset), so the whole forecast is one query however many days and
distinct sets of tasks it has:

- members in the directory: ONE scan of ``campaigns_users`` that packs, per user, the tasks
  whose compiled predicate holds into a bit mask, grouped by that mask: the answer is one row
  per combination of tasks (with how many users have it), and each predicate is evaluated
  once per user (the floor, a ``COUNT(*)`` over the UNION ALL of the memberships, evaluates each
  once per user too, in one scan per task);
- members outside the directory (listed by ``users:``/CSV audiences): the UNION ALL of each
  task's outside ids tagged with the task's bit, summed per user, then grouped by mask the same
  way (small: lists only).

The arithmetic (messages = tasks x users per combination, capped where tasks > cap) is done
on those few rows in Python; no member ever leaves the database.

Both parts are disjoint (a user is in the directory or not), so their sums add up.
Opt-outs are not subtracted: the forecast counts members, as the audience sizes do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, case, func, literal, select, union_all
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.functions import Function
from sqlalchemy.sql.visitors import iterate, replacement_traverse

from engine.state import directory_tables as dt
from engine.state.dialect import Dialect

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


MASK_BITS = 60
"""Tasks per mask column: a user's tasks are bits of BIGINT columns (62 would fit; 60 is round)."""


def _masks(flags: Sequence[Any]) -> list[Any]:
    """The 0/1 ``flags`` packed into BIGINT bit masks, MASK_BITS a column."""

    columns = []
    for start in range(0, len(flags), MASK_BITS):
        total = None
        for bit, flag in enumerate(flags[start : start + MASK_BITS]):
            term = case((flag, literal(1 << bit, BigInteger)), else_=literal(0, BigInteger))
            total = term if total is None else total + term
        columns.append(total)
    return columns


def _add(combos: dict[tuple[int, ...], int], rows: Any) -> None:
    for *masks, users in rows:
        key = tuple(int(m or 0) for m in masks)
        combos[key] = combos.get(key, 0) + int(users)


def tally(combos: dict[tuple[int, ...], int], due: Sequence[int], cap: int | None) -> DayCount:
    """One day's totals when the tasks numbered ``due`` are due, from ``combinations`` (task bit
    masks -> users): arithmetic on a few hundred rows, never on members. ``capped_by_task``
    follows the order of ``due``."""
    messages = users = capped = held = 0
    by_task = [0] * len(due)
    positions = [divmod(task, MASK_BITS) for task in due]
    for masks, count in combos.items():
        hits = [index for index, (chunk, bit) in enumerate(positions) if masks[chunk] >> bit & 1]
        if not hits:
            continue
        messages += len(hits) * count
        users += count
        if cap is not None and len(hits) > cap:
            capped += count
            held += (len(hits) - cap) * count
            for index in hits:
                by_task[index] += count
    return DayCount(messages, users, capped, held, tuple(by_task))


def combinations(store: StateStore, memberships: Sequence[Membership]) -> dict[tuple[int, ...], int]:
    """How many users are members of exactly each combination of the tasks (bit ``i`` of the
    masks: task ``i`` of ``memberships``); users in none are left out.

    Directory members: ONE scan that packs each user's tasks into bit masks and groups by them,
    so what comes back is one row per combination of tasks, never per user. Outside members:
    each task's ids tagged with its bit, summed per user, grouped the same way."""

    combos: dict[tuple[int, ...], int] = {}
    if not memberships:
        return combos
    predicates = [m.directory for m in memberships]
    source: Any = dt.users
    weight: Any = None
    if Dialect.for_store(store).parses_json_per_call:
        source, predicates, weight = _extracted(predicates)
    masks = _masks(predicates)
    labelled = [mask.label(f"m{k}") for k, mask in enumerate(masks)]
    if weight is None:
        inner = select(*labelled).select_from(source).subquery("masks")
        counted: Any = func.count()
    else:  # one row per distinct combination of attribute values, weighed by its users
        inner = select(*labelled, weight.label("n")).select_from(source).subquery("masks")
        counted = func.sum(inner.c.n)
    columns = [inner.c[f"m{k}"] for k in range(len(masks))]
    inside = select(*columns, counted).group_by(*columns)
    outside_parts = []
    for i, m in enumerate(memberships):
        if m.outside is None:
            continue
        ids = m.outside.subquery(f"o{i}")
        chunk, bit = divmod(i, MASK_BITS)
        values = [literal(1 << bit if k == chunk else 0, BigInteger).label(f"m{k}") for k in range(len(masks))]
        outside_parts.append(select(ids.c.user_id.label("user_id"), *values))
    with store.reading() as conn:
        _add(combos, conn.execute(inside))
        if outside_parts:
            tagged = (outside_parts[0] if len(outside_parts) == 1 else union_all(*outside_parts)).subquery("tagged")
            per_user = (
                select(*[func.sum(tagged.c[f"m{k}"]).label(f"m{k}") for k in range(len(masks))])
                .group_by(tagged.c.user_id)
                .subquery("per_user")
            )
            grouped = [per_user.c[f"m{k}"] for k in range(len(masks))]
            _add(combos, conn.execute(select(*grouped, func.count()).group_by(*grouped)))
    combos.pop(tuple([0] * len(masks)), None)
    return combos


_JSON_FUNCTIONS = ("json_type", "json_extract")


def _extracted(predicates: list[Any]) -> tuple[Any, list[Any], Any]:
    """SQLite: the predicates over a MATERIALIZED CTE holding each ``json_type``/``json_extract``
    of the users' attributes they use, computed once per user, instead of over the table.

    When no predicate looks at ``user_id`` (a rule reads attributes only), the users are first
    grouped by those attribute values: the masks are then computed once per distinct combination
    of values, not once per user (SQLite evaluates the tasks' CASE expressions in its VM, about a
    quarter of a microsecond each: twenty tasks over a million users is most of the query), and
    the third value returned is the column holding how many users each row stands for (None when
    the rows are users).

    SQLite 3.40 parses a user's JSON document again at every ``json_*`` call; twenty tasks'
    rules make dozens of calls per user. The CTE makes it one call per attribute,
    whatever the number of tasks; the predicates are the same expressions with those calls
    replaced by the CTE's columns (SQLAlchemy's ``replacement_traverse``), so their meaning
    cannot drift from the compiler's."""

    users = dt.users
    keys: dict[tuple[str, str], Any] = {}

    def key_of(element: Any) -> tuple[str, str] | None:
        if isinstance(element, Function) and element.name in _JSON_FUNCTIONS:
            args = list(element.clauses)
            if len(args) == 2 and args[0] is users.c.attributes and isinstance(args[1], BindParameter):
                return element.name, str(args[1].value)
        return None

    for predicate in predicates:
        for element in iterate(predicate):
            key = key_of(element)
            if key is not None and key not in keys:
                keys[key] = element
    # One json_extract per attribute: the directory holds only numbers and text (users import
    # writes nothing else: no JSON null, boolean, object or array), so json_type is the SQL
    # type of the extracted value (integer, real, text), and NULL when the attribute is missing.
    paths = list(dict.fromkeys(path for _, path in keys))
    names = {path: f"x{index}" for index, path in enumerate(paths)}
    cte = (
        select(users.c.user_id, *[func.json_extract(users.c.attributes, path).label(names[path]) for path in paths])
        .cte("extracted")
        .prefix_with("MATERIALIZED")
    )

    by_user = any(element is users.c.user_id for predicate in predicates for element in iterate(predicate))
    if by_user or not paths:
        source: Any = cte
        weight = None
    else:
        values = [cte.c[names[path]] for path in paths]
        source = select(*values, func.count().label("users_n")).group_by(*values).subquery("distinct_values")
        weight = source.c.users_n

    def replace(element: Any) -> Any:
        key = key_of(element)
        if key is not None:
            column = source.c[names[key[1]]]
            return column if key[0] == "json_extract" else func.nullif(func.typeof(column), "null")
        if element is users.c.user_id:
            return cte.c.user_id
        return None

    return source, [replacement_traverse(predicate, {}, replace) for predicate in predicates], weight


def count_day(store: StateStore, memberships: Sequence[Membership], cap: int | None) -> DayCount:
    """Messages, users and capped users when every task of ``memberships`` is due the same day."""
    return tally(combinations(store, memberships), range(len(memberships)), cap)


def count_floor(store: StateStore, memberships: Sequence[Membership]) -> int:
    """One ``COUNT(*)`` over the same memberships (UNION ALL of each task's members): the least a
    database can do to read them, the floor that ``bench/forecast.py`` prints next to the forecast."""

    u = dt.users
    parts = [select(u.c.user_id).where(m.directory) for m in memberships]
    parts += [m.outside for m in memberships if m.outside is not None]
    if not parts:
        return 0
    members = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("members")
    with store.reading() as conn:
        return int(conn.execute(select(func.count()).select_from(members)).scalar_one())
