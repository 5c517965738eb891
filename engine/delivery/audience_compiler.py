"""Audiences compiled to SQL over the directory tables: ONE compiled form, ``Compiled``.

``where`` rules become SQLAlchemy expressions (parameterised; never SQL text built from names or
values), lists and snapshots SELECTs of the ids they keep, ``include``/``exclude`` their
combination. A compiled audience answers both questions membership asks of it: which directory
rows are members (``directory``, plus ``outside`` for listed ids not in the directory) and which
ids are members (``ids``, one SELECT). The semantics of a condition are in
``engine.delivery.audiences``; what differs between SQLite and PostgreSQL in
``engine.state.dialect``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, except_, false, not_, or_, select, union

from engine.config.models import Where
from engine.delivery.audience_rules import (
    USER_ID,
    AudienceError,
    list_source,
    operand,
    source_of,
    unknown_attribute_message,
)
from engine.delivery.directory import NoDirectory
from engine.state import directory_tables as dt
from engine.state.dialect import Dialect, JsonAttribute


@dataclass(frozen=True)
class Compiled:
    """An audience as SQL.

    - ``directory``: a never-NULL predicate over a ``campaigns_users`` row (the members in the
      directory; safe under NOT);
    - ``outside``: a predicate over an id column for ids NOT in the directory, which only lists
      and snapshots can add (None: none); ``candidates``: SELECTs of the ids that may be outside;
    - ``scans``: a ``where`` rule adds members, so the directory is scanned anyway;
    - ``ids``: a SELECT of the members' ids;
    - ``rule``: the audience is a predicate over directory rows alone (``where`` rules and their
      combinations): ``directory`` is then all of it.
    """

    directory: Any
    outside: Callable[[Any], Any] | None
    candidates: tuple[Any, ...]
    scans: bool
    ids: Any
    rule: bool


class Compiler:
    """Turns audience bodies into ``Compiled`` audiences over the directory tables.

    ``bodies``: audience id -> body (every audience reachable from the ones compiled);
    ``known``: the directory's attribute names (None: no directory); ``snapshots``: audience id ->
    (task id, audience id) of the ``refresh: once`` snapshots a top audience is read from."""

    def __init__(
        self,
        dialect: Dialect,
        bodies: Mapping[str, Mapping[str, Any]],
        known: set[str] | None,
        snapshots: Mapping[str, tuple[str, str]] | None = None,
    ) -> None:
        self.dialect = dialect
        self.bodies = bodies
        self.known = known
        self.snapshots = snapshots or {}
        self.users = dt.users
        self.lists = dt.audience_lists
        self.snapshot_table = dt.snapshots

    # reachability (for list materialisation and attribute overlays) --------------------------

    def body(self, audience_id: str, via: Sequence[str]) -> Mapping[str, Any]:
        if audience_id in via:
            cycle = " -> ".join([*via[via.index(audience_id) :], audience_id])
            raise AudienceError(f"audience {audience_id!r} includes itself: {cycle}", audience_id=audience_id)
        body = self.bodies.get(audience_id)
        if body is None:
            where = f" (included by {via[-1]!r})" if via else ""
            raise AudienceError(f"audience {audience_id!r}{where} is not defined", audience_id=audience_id)
        return body

    def walk(self, audience_id: str, via: tuple[str, ...] = (), positive: bool = True) -> Iterator[tuple[str, Mapping[str, Any], bool]]:
        """Every audience reachable from ``audience_id`` (itself first), with whether it adds
        members (False under an ``exclude``). Raises on cycles and undefined audiences."""
        body = self.body(audience_id, via)
        yield audience_id, body, positive
        source = source_of(audience_id, body)
        for child in source.get("include") or []:
            yield from self.walk(child, (*via, audience_id), positive)
        for child in source.get("exclude") or []:
            yield from self.walk(child, (*via, audience_id), False)

    # compiling --------------------------------------------------------------------------------

    def compile(self, audience_id: str, via: tuple[str, ...] = (), top: bool = False) -> Compiled:
        """The audience compiled; ``top``: a task names it (its snapshot, if any, is used)."""
        body = self.body(audience_id, via)
        if top and audience_id in self.snapshots:
            task_id, snapshot_of = self.snapshots[audience_id]
            s = self.snapshot_table
            return self._listed(select(s.c.user_id).where(s.c.task_id == task_id, s.c.audience_id == snapshot_of))
        source = source_of(audience_id, body)
        listed = list_source(audience_id, body)
        if listed is not None:
            return self._listed(select(self.lists.c.user_id).where(self.lists.c.digest == listed.digest))
        if "where" in source:
            expr = self.where(audience_id, source["where"])
            return Compiled(expr, None, (), True, select(self.users.c.user_id).where(expr), True)
        if "include" in source:
            inside = (*via, audience_id)
            included = [self.compile(child, inside) for child in source["include"]]
            excluded = [self.compile(child, inside) for child in source.get("exclude") or []]
            return self.combine(included, excluded)
        raise AudienceError.about(audience_id, "its source is none of users, csv, where, include")

    def _listed(self, ids: Any) -> Compiled:
        return Compiled(self.users.c.user_id.in_(ids), lambda column: column.in_(ids), (ids,), False, ids, False)

    def combine(self, included: list[Compiled], excluded: list[Compiled]) -> Compiled:
        """``include`` (union) minus ``exclude``."""
        directory = or_(*[part.directory for part in included])
        if excluded:
            directory = and_(directory, not_(or_(*[part.directory for part in excluded])))
        adds = [part.outside for part in included if part.outside is not None]
        removes = [part.outside for part in excluded if part.outside is not None]
        outside: Callable[[Any], Any] | None = None
        if adds:

            def outside(column: Any) -> Any:
                test = or_(*[add(column) for add in adds])
                return and_(test, not_(or_(*[remove(column) for remove in removes]))) if removes else test

        candidates = tuple(c for part in included for c in part.candidates)
        scans = any(part.scans for part in included)
        if all(part.rule for part in included + excluded):
            return Compiled(directory, outside, candidates, scans, select(self.users.c.user_id).where(directory), True)
        selects = [part.ids for part in included]
        ids = selects[0] if len(selects) == 1 else self.wrap(union(*selects))
        if excluded:
            removed = [part.ids for part in excluded]
            other = removed[0] if len(removed) == 1 else self.wrap(union(*removed))
            ids = self.wrap(except_(ids, other))
        return Compiled(directory, outside, candidates, scans, ids, False)

    @staticmethod
    def wrap(compound: Any) -> Any:
        """A compound SELECT as a plain one (SQLite cannot nest compounds in parentheses)."""
        inner = compound.subquery()
        return select(inner.c.user_id)

    def as_text(self, column: Any) -> Any:
        """An attributes column as JSON text (psycopg's jsonb-to-dict costs twice json.loads)."""
        return self.dialect.as_text(column)

    # where rules ------------------------------------------------------------------------------

    def where(self, audience_id: str, rule: Mapping[str, Any]) -> Any:
        try:
            model = Where.model_validate(rule)
        except Exception as problem:  # noqa: BLE001 - pydantic's ValidationError; bodies are validated before
            raise AudienceError.about(audience_id, f"its where rule is not valid: {problem}") from None
        if self.known is None:
            raise NoDirectory(
                f"audience {audience_id!r} selects users by attributes, but no user directory was imported "
                "(campaigns users import FILE.csv)"
            )
        groups = []
        for group in model.groups:
            groups.append(and_(*[self.condition(audience_id, condition) for condition in group]))
        return or_(*groups)

    def condition(self, audience_id: str, condition: Any) -> Any:
        try:
            return self._condition(audience_id, condition)
        except AudienceError as problem:
            if problem.audience_id is not None:
                raise
            raise AudienceError.about(audience_id, str(problem)) from None

    def _condition(self, audience_id: str, condition: Any) -> Any:
        name = condition.attr
        operator, value = condition.operator
        if name != USER_ID and name not in (self.known or set()):
            raise AudienceError.about(audience_id, unknown_attribute_message(name, self.known or set()))
        access = JsonAttribute.text_column(self.users.c.user_id) if name == USER_ID else self.access(name)
        text_only = name == USER_ID

        def equal(value: Any) -> Any:
            kind, typed = operand(value, text_only=text_only)
            return and_(access.is_number, access.number == typed) if kind == "number" else and_(access.is_text, access.text == typed)

        def member_of(values: list[Any]) -> Any:
            numbers, texts = [], []
            for value in values:
                kind, typed = operand(value, text_only=text_only)
                (numbers if kind == "number" else texts).append(typed)
            parts = []
            if numbers:
                parts.append(and_(access.is_number, access.number.in_(numbers)))
            if texts:
                parts.append(and_(access.is_text, access.text.in_(texts)))
            return or_(*parts) if parts else false()

        if operator == "exists":
            return access.exists if value else not_(access.exists)
        if operator == "eq":
            return equal(value)
        if operator == "ne":
            return not_(equal(value))
        if operator == "in":
            return member_of(list(value))
        if operator == "not_in":
            return not_(member_of(list(value)))
        kind, typed = operand(value, text_only=text_only)
        compared = access.number if kind == "number" else access.text
        check = access.is_number if kind == "number" else access.is_text
        compare = {"gt": compared > typed, "gte": compared >= typed, "lt": compared < typed, "lte": compared <= typed}.get(operator)
        if compare is None:  # pragma: no cover - the model allows no other operator
            raise AudienceError.about(audience_id, f"unknown operator {operator!r}")
        return and_(check, compare)

    def access(self, name: str) -> JsonAttribute:
        return self.dialect.attribute(self.users.c.attributes, name)
