"""Audience membership: who a task delivers to, streamed in ``user_id`` order.

An audience's source is one of:

- ``users: [ids]`` -- these users, even those not in the directory (attributes from the directory
  when it has them);
- ``csv: file`` -- the CSV's rows; its columns are attributes laid over the directory's for the
  same user (an empty cell lets the directory's value show), an ``opt_out`` column adds opt-outs;
- ``where:`` -- ``any:`` of ``all:`` groups of conditions over directory attributes, compiled to
  parameterised SQL (SQLAlchemy expressions, never SQL text built from names or values);
- ``include: [ids]`` (union) with optional ``exclude: [ids]`` (removed), recursively; a cycle is
  an error.

Condition semantics (the same on SQLite and PostgreSQL):

- values are typed: a directory cell that is a canonical numeral is a number, anything else is
  text. An operand that is a number -- or a string that is a canonical numeral, since the
  directory stores such cells as numbers -- matches numeric values only; other strings match
  text values only, compared by code point (case-sensitive). ``true``/``false`` operands are the
  text "true"/"false".
- ``eq``, ``in``, ``gt``, ``gte``, ``lt``, ``lte`` never match a user without the attribute;
  ``ne`` and ``not_in`` do (a missing value is not equal to anything); ``exists: true|false``
  tests presence.
- ``user_id`` can be used as an attribute (text).

``refresh: once`` (on an audience a task names) fixes the member ids the first time the task
delivers (``task_members(..., snapshot=True)``), per task and audience; attributes are still read
at delivery. ``refresh`` of an audience reached through ``include`` is not separate from the
audience that includes it. ``refresh: auto`` re-evaluates at every call.

Which store: every function takes the store that holds the **directory**
(``engine.delivery.directory.directory_store``); the cached CSV members and the snapshots live
next to the directory so they join it in SQL. CSV contents are read with ``.attachment(digest)``
of ``attachments`` (the state store, when the directory is in another database, or a mapping
``digest -> bytes`` such as the plan's repository files), falling back to ``store``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from engine.config.usercsv import CsvFile
from engine.errors import CampaignsError

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement, Connection, Select

    from engine.state import StateStore

USER_ID = "user_id"
_NUMBER_TYPES_SQLITE = ("integer", "real")


class AudienceError(CampaignsError):
    """An audience cannot be evaluated (unknown attribute, cycle, missing CSV, ...)."""


class MissingContent(AudienceError):
    """A CSV audience's content is neither in the state nor given by the caller."""


@dataclass(frozen=True, slots=True)
class Member:
    user_id: str
    attributes: dict  # what templates see as ``user.<name>`` (``user_id`` included)
    opt_out: frozenset[str]  # channels the user opted out of


# -- attribute checks --------------------------------------------------------------------------


def audience_attribute_problems(audience_body: Mapping[str, Any], known: set[str]) -> list[tuple[tuple, str]]:
    """``(path, message)`` for each condition of the audience's own ``where`` rule that names an
    attribute the directory does not have. ``path`` locates the ``attr`` node in the audience
    document, e.g. ``("source", "where", "any", 0, "all", 1, "attr")``."""
    source = audience_body.get("source") if isinstance(audience_body, Mapping) else None
    where = source.get("where") if isinstance(source, Mapping) else None
    if not isinstance(where, Mapping):
        return []
    located: list[tuple[tuple, Any]] = []
    if isinstance(where.get("any"), list):
        for number, group in enumerate(where["any"]):
            if isinstance(group, Mapping) and isinstance(group.get("all"), list):
                for index, condition in enumerate(group["all"]):
                    located.append((("source", "where", "any", number, "all", index), condition))
    if isinstance(where.get("all"), list):
        for index, condition in enumerate(where["all"]):
            located.append((("source", "where", "all", index), condition))
    problems = []
    for path, condition in located:
        name = condition.get("attr") if isinstance(condition, Mapping) else None
        if isinstance(name, str) and name != USER_ID and name not in known:
            problems.append((path + ("attr",), unknown_attribute_message(name, known)))
    return problems


def check_audience_attributes(audience_body: Mapping[str, Any], known: set[str]) -> list[str]:
    """Messages for the conditions of the audience's ``where`` rule that name attributes the
    directory does not have (``known``: ``engine.delivery.directory.known_attributes``)."""
    return [message for _path, message in audience_attribute_problems(audience_body, known)]


def unknown_attribute_message(name: str, known: set[str]) -> str:
    hint = difflib.get_close_matches(name, sorted(known), n=1)
    names = sorted(known)
    shown = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
    text = f"the user directory has no attribute {name!r}"
    if hint:
        text += f" (did you mean {hint[0]!r}?)"
    return text + (f"; it has: {shown}" if names else "; it has none")


# -- compiling audiences to SQL ----------------------------------------------------------------


@dataclass(frozen=True)
class _Pred:
    """Members are the directory users for which ``expr`` holds (never NULL: safe under NOT)."""

    expr: Any


@dataclass(frozen=True)
class _Ids:
    """Members are the distinct ``user_id`` values of ``select``."""

    select: Any


@dataclass(frozen=True)
class _Split:
    """An audience as ``directory`` (a never-NULL predicate over a ``campaigns_users`` row: the
    members in the directory), ``outside`` (a predicate over an id column for ids NOT in the
    directory, which only lists and snapshots can add; None: none), ``candidates`` (SELECTs of
    the ids that may be outside) and ``scans`` (a where rule adds members, so the directory is
    scanned anyway)."""

    directory: Any
    outside: Callable[[Any], Any] | None
    candidates: tuple[Any, ...]
    scans: bool


@dataclass(frozen=True)
class _ListSource:
    digest: str
    kind: str  # csv | users
    audience_id: str
    body: Mapping[str, Any]


def users_list_digest(user_ids: Sequence[str]) -> str:
    """Content digest of a ``users:`` list (order and repeats do not matter)."""
    text = "users\n" + "\n".join(sorted(set(user_ids)))
    return hashlib.sha256(text.encode()).hexdigest()


def _source(audience_id: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
    source = body.get("source") if isinstance(body, Mapping) else None
    if not isinstance(source, Mapping):
        raise AudienceError(f"audience {audience_id!r} has no source")
    return source


def _list_source(audience_id: str, body: Mapping[str, Any]) -> _ListSource | None:
    source = _source(audience_id, body)
    if "users" in source:
        return _ListSource(users_list_digest(source["users"]), "users", audience_id, body)
    if "csv" in source:
        digest = body.get("csv_digest")
        if not isinstance(digest, str) or not digest:
            raise AudienceError(
                f"audience {audience_id!r}: its CSV ({source['csv']}) has no stored content digest; apply the repository first"
            )
        return _ListSource(digest, "csv", audience_id, body)
    return None


class _Compiler:
    """Turns audience bodies into SQLAlchemy expressions over the directory tables."""

    def __init__(
        self,
        dialect: str,
        bodies: Mapping[str, Mapping[str, Any]],
        known: set[str] | None,
        snapshots: Mapping[str, tuple[str, str]] | None = None,
    ) -> None:
        from engine.state import directory_tables as dt

        self.dialect = dialect
        self.bodies = bodies
        self.known = known
        self.snapshots = snapshots or {}  # audience id -> (task id, audience id) with a snapshot
        self.users = dt.users
        self.lists = dt.audience_lists
        self.snapshot_table = dt.snapshots

    # reachability (for list materialisation and attribute overlays) --------------------------

    def body(self, audience_id: str, via: Sequence[str]) -> Mapping[str, Any]:
        if audience_id in via:
            cycle = " -> ".join([*via[via.index(audience_id) :], audience_id])
            raise AudienceError(f"audience {audience_id!r} includes itself: {cycle}")
        body = self.bodies.get(audience_id)
        if body is None:
            where = f" (included by {via[-1]!r})" if via else ""
            raise AudienceError(f"audience {audience_id!r}{where} is not defined")
        return body

    def walk(self, audience_id: str, via: tuple[str, ...] = (), positive: bool = True) -> Iterator[tuple[str, Mapping[str, Any], bool]]:
        """Every audience reachable from ``audience_id`` (itself first), with whether it adds
        members (False under an ``exclude``). Raises on cycles and undefined audiences."""
        body = self.body(audience_id, via)
        yield audience_id, body, positive
        source = _source(audience_id, body)
        for child in source.get("include") or []:
            yield from self.walk(child, (*via, audience_id), positive)
        for child in source.get("exclude") or []:
            yield from self.walk(child, (*via, audience_id), False)

    # expressions ------------------------------------------------------------------------------

    def audience(self, audience_id: str, via: tuple[str, ...] = (), top: bool = False) -> _Pred | _Ids:
        body = self.body(audience_id, via)
        if top and audience_id in self.snapshots:
            task_id, snapshot_of = self.snapshots[audience_id]
            s = self.snapshot_table
            from sqlalchemy import select

            return _Ids(select(s.c.user_id).where(s.c.task_id == task_id, s.c.audience_id == snapshot_of))
        source = _source(audience_id, body)
        listed = _list_source(audience_id, body)
        if listed is not None:
            from sqlalchemy import select

            lists = self.lists
            return _Ids(select(lists.c.user_id).where(lists.c.digest == listed.digest))
        if "where" in source:
            return _Pred(self.where(audience_id, source["where"]))
        if "include" in source:
            inside = (*via, audience_id)
            included = [self.audience(child, inside) for child in source["include"]]
            excluded = [self.audience(child, inside) for child in source.get("exclude") or []]
            return self.combine(included, excluded)
        raise AudienceError(f"audience {audience_id!r}: its source is none of users, csv, where, include")

    def split(self, audience_id: str, via: tuple[str, ...] = (), top: bool = False) -> _Split:
        """The audience as a ``_Split`` (see there)."""
        part = self.leaf(audience_id, via, top)
        if isinstance(part, _Ids):
            listed = part.select
            return _Split(self.users.c.user_id.in_(listed), lambda column: column.in_(listed), (listed,), False)
        if isinstance(part, _Pred):
            return _Split(part.expr, None, (), True)
        source = _source(audience_id, self.bodies[audience_id])
        inside = (*via, audience_id)
        included = [self.split(child, inside) for child in source["include"]]
        excluded = [self.split(child, inside) for child in source.get("exclude") or []]
        return _combine_splits(included, excluded)

    def leaf(self, audience_id: str, via: tuple[str, ...], top: bool) -> _Pred | _Ids | None:
        """A snapshot, list or where audience compiled; None for an include."""
        body = self.body(audience_id, via)
        if top and audience_id in self.snapshots:
            return self.audience(audience_id, via, top)
        source = _source(audience_id, body)
        if "include" in source:
            return None
        return self.audience(audience_id, via, top)

    def as_text(self, column: Any) -> Any:
        """An attributes column as JSON text (psycopg's jsonb-to-dict costs twice json.loads)."""
        if self.dialect == "postgresql":
            from sqlalchemy import Text, cast

            return cast(column, Text)
        return column

    def combine(self, included: list[_Pred | _Ids], excluded: list[_Pred | _Ids]) -> _Pred | _Ids:
        from sqlalchemy import and_, except_, not_, or_, union

        if all(isinstance(part, _Pred) for part in included + excluded):
            expr = or_(*[part.expr for part in included])
            if excluded:
                expr = and_(expr, not_(or_(*[part.expr for part in excluded])))
            return _Pred(expr)
        selects = [self.ids(part) for part in included]
        result = selects[0] if len(selects) == 1 else self.wrap(union(*selects))
        if excluded:
            removed = [self.ids(part) for part in excluded]
            other = removed[0] if len(removed) == 1 else self.wrap(union(*removed))
            result = self.wrap(except_(result, other))
        return _Ids(result)

    def ids(self, part: _Pred | _Ids) -> Any:
        from sqlalchemy import select

        if isinstance(part, _Ids):
            return part.select
        return select(self.users.c.user_id).where(part.expr)

    @staticmethod
    def wrap(compound: Any) -> Any:
        """A compound SELECT as a plain one (SQLite cannot nest compounds in parentheses)."""
        from sqlalchemy import select

        inner = compound.subquery()
        return select(inner.c.user_id)

    def where(self, audience_id: str, rule: Mapping[str, Any]) -> Any:
        from sqlalchemy import and_, or_

        from engine.config.models import Where

        try:
            model = Where.model_validate(rule)
        except Exception as problem:  # noqa: BLE001 - pydantic's ValidationError; bodies are validated before
            raise AudienceError(f"audience {audience_id!r}: its where rule is not valid: {problem}") from None
        if self.known is None:
            from engine.delivery.directory import NoDirectory

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
            if str(problem).startswith("audience "):
                raise
            raise AudienceError(f"audience {audience_id!r}: {problem}") from None

    def _condition(self, audience_id: str, condition: Any) -> Any:
        from sqlalchemy import and_, false, not_, or_

        name = condition.attr
        operator, operand = condition.operator
        if name != USER_ID and name not in (self.known or set()):
            raise AudienceError(f"audience {audience_id!r}: {unknown_attribute_message(name, self.known or set())}")
        access = _UserIdAccess(self.users) if name == USER_ID else self.access(name)

        def equal(value: Any) -> Any:
            kind, typed = _operand(value, text_only=name == USER_ID)
            return and_(access.is_number, access.number == typed) if kind == "number" else and_(access.is_text, access.text == typed)

        def member_of(values: list[Any]) -> Any:
            numbers, texts = [], []
            for value in values:
                kind, typed = _operand(value, text_only=name == USER_ID)
                (numbers if kind == "number" else texts).append(typed)
            parts = []
            if numbers:
                parts.append(and_(access.is_number, access.number.in_(numbers)))
            if texts:
                parts.append(and_(access.is_text, access.text.in_(texts)))
            return or_(*parts) if parts else false()

        if operator == "exists":
            return access.exists if operand else not_(access.exists)
        if operator == "eq":
            return equal(operand)
        if operator == "ne":
            return not_(equal(operand))
        if operator == "in":
            return member_of(list(operand))
        if operator == "not_in":
            return not_(member_of(list(operand)))
        kind, typed = _operand(operand, text_only=name == USER_ID)
        value = access.number if kind == "number" else access.text
        check = access.is_number if kind == "number" else access.is_text
        compare = {"gt": value > typed, "gte": value >= typed, "lt": value < typed, "lte": value <= typed}.get(operator)
        if compare is None:  # pragma: no cover - the model allows no other operator
            raise AudienceError(f"audience {audience_id!r}: unknown operator {operator!r}")
        return and_(check, compare)

    def access(self, name: str) -> Any:
        if self.dialect == "postgresql":
            return _PostgresAccess(self.users, name)
        return _SqliteAccess(self.users, name)


def _combine_splits(included: list[_Split], excluded: list[_Split]) -> _Split:
    from sqlalchemy import and_, not_, or_

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
    return _Split(directory, outside, candidates, any(part.scans for part in included))


def _operand(value: Any, *, text_only: bool = False) -> tuple[str, Any]:
    """``("number", n)`` or ``("text", s)``: how a rule's value compares (see the module doc)."""
    from engine.delivery.directory import parse_numeral

    if isinstance(value, bool):
        return "text", "true" if value else "false"
    if isinstance(value, (int, float)):
        if value != value:
            raise AudienceError("a rule compares with NaN, which equals nothing; use a number")
        if text_only:
            return "text", str(value) if isinstance(value, int) else repr(value)
        # compared as doubles on both backends (values have at most 15 digits: exact); an int
        # would also bind as a PostgreSQL INTEGER, which overflows past 2**31 and rounds 2.5 when
        # it types an IN list by its first element
        return "number", float(value)
    text = str(value)
    if not text_only:
        number = parse_numeral(text)
        if number is not None:
            return "number", float(number)
    return "text", text


class _SqliteAccess:
    """One attribute of ``campaigns_users.attributes`` (JSON text) on SQLite."""

    def __init__(self, users: Any, name: str) -> None:
        from sqlalchemy import func

        path = f"$.{name}"  # name matches [A-Za-z][A-Za-z0-9_]*; the path is a bound parameter
        kind = func.coalesce(func.json_type(users.c.attributes, path), "")
        value = func.json_extract(users.c.attributes, path)
        self.exists = func.json_type(users.c.attributes, path).is_not(None)
        self.is_number = kind.in_(_NUMBER_TYPES_SQLITE)
        self.is_text = kind == "text"
        self.number = value
        self.text = value


class _PostgresAccess:
    """One attribute of ``campaigns_users.attributes`` (JSONB) on PostgreSQL."""

    def __init__(self, users: Any, name: str) -> None:
        from sqlalchemy import Float, case, cast, func, type_coerce
        from sqlalchemy.dialects.postgresql import JSONB

        document = type_coerce(users.c.attributes, JSONB())
        node = document[name]
        kind = func.coalesce(func.jsonb_typeof(node), "")
        self.exists = func.jsonb_typeof(node).is_not(None)
        self.is_number = kind == "number"
        self.is_text = kind == "string"
        # CASE: the cast runs only on numbers, whatever order the planner evaluates conditions in
        self.number = case((func.jsonb_typeof(node) == "number", cast(document[name].astext, Float)))
        self.text = document[name].astext.collate("C")


class _UserIdAccess:
    def __init__(self, users: Any) -> None:
        from sqlalchemy import false, true

        self.exists = true()
        self.is_number = false()
        self.is_text = true()
        self.number = users.c.user_id
        self.text = users.c.user_id


# -- materialising lists and snapshots ---------------------------------------------------------


def _attachment(store: StateStore, attachments: Any, digest: str) -> bytes | CsvFile | None:
    if isinstance(attachments, Mapping):
        content = attachments.get(digest)
        if isinstance(content, CsvFile):
            return content  # a CSV in the repository (plan): streamed, never read whole
        if content is not None:
            return bytes(content)
        return store.attachment(digest)
    return (attachments if attachments is not None else store).attachment(digest)


def _advisory_lock(conn: Connection, store: StateStore, purpose: str) -> None:
    """Serialise writers of one cached item on PostgreSQL (SQLite's BEGIN IMMEDIATE does)."""
    if conn.dialect.name != "postgresql":
        return
    from sqlalchemy import func, select

    from engine.state.locking import advisory_key

    key = advisory_key(purpose, str(store.location.url.database), str(store.location.schema))
    conn.execute(select(func.pg_advisory_xact_lock(key)))


def _analyze(conn: Connection, table: Any) -> None:
    """Fresh PostgreSQL statistics after a bulk write: without them the planner takes a new
    snapshot for a dozen rows and joins it to the directory by a nested loop."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"ANALYZE {table.name}")


def _ensure_lists(store: StateStore, sources: list[_ListSource], attachments: Any) -> None:
    """Parse each CSV / ``users:`` list once per content digest into the lists table."""
    if not sources:
        return
    from sqlalchemy import select

    from engine.state import directory_tables as dt

    meta = dt.audience_list_meta
    wanted = {source.digest: source for source in sources}
    with store.reading() as conn:
        have = set(conn.execute(select(meta.c.digest).where(meta.c.digest.in_(sorted(wanted)))).scalars())
    for digest, source in wanted.items():
        if digest in have:
            continue
        listed = _ListedRows(store, source, attachments)  # a missing CSV fails before any write
        with store.writing() as conn:
            _advisory_lock(conn, store, f"audience-list:{digest}")
            if conn.execute(select(meta.c.digest).where(meta.c.digest == digest)).first() is not None:
                continue  # another process made it meanwhile
            from engine.delivery.directory import bulk_insert

            # streamed from the file into the table; a bad row or a changed file raises below,
            # which rolls the whole list back
            bulk_insert(conn, dt.audience_lists, ["digest", "user_id", "attributes", "opt_out"], ((digest, *row) for row in listed))
            columns = listed.finish()
            conn.execute(
                meta.insert().values(
                    digest=digest,
                    kind=source.kind,
                    size=listed.count,
                    columns=json.dumps(columns, ensure_ascii=False),
                    created_at=datetime.now(timezone.utc),
                )
            )
            _analyze(conn, dt.audience_lists)


class _ListedRows:
    """The rows of a CSV or ``users:`` list as ``(user_id, attributes JSON or None, opt_out)``,
    read one at a time (a CSV is never held whole); ``finish`` then checks them."""

    def __init__(self, store: StateStore, source: _ListSource, attachments: Any) -> None:
        self.source = source
        self.count = 0
        self.reader: Any = None
        if source.kind == "users":
            return
        from engine.config.usercsv import CsvFileError, UsersCsv

        path = source.body.get("csv_path") or source.body["source"]["csv"]
        content = _attachment(store, attachments, source.digest)
        if content is None:
            raise MissingContent(f"audience {source.audience_id!r}: the content of its CSV {path} is not in the state; apply first")
        try:
            self.reader = UsersCsv.from_file(content, str(path)) if isinstance(content, CsvFile) else UsersCsv.from_bytes(content, str(path))
        except CsvFileError as problem:
            raise AudienceError(f"audience {source.audience_id!r}: {problem}") from None

    def __iter__(self) -> Iterator[tuple]:
        if self.reader is None:
            for user_id in sorted(set(self.source.body["source"]["users"])):
                self.count += 1
                yield user_id, None, None
            return
        from engine.config.usercsv import CsvFileError

        try:
            for user_id, text, opt_out in self.reader.rows():
                self.count += 1
                yield user_id, None if text == "{}" else text, opt_out
        except CsvFileError as problem:
            raise AudienceError(f"audience {self.source.audience_id!r}: {problem}") from None

    def finish(self) -> list[str]:
        """The list's attribute columns, once every row was read and found good."""
        if self.reader is None:
            return []
        from engine.config.usercsv import CsvFileError

        try:
            self.reader.verify()  # the rows are those of the content digest they are kept under
        except CsvFileError as problem:
            raise AudienceError(f"audience {self.source.audience_id!r}: {problem}") from None
        if self.reader.problem_count:
            raise AudienceError(f"audience {self.source.audience_id!r}: {self.reader.rejection('the audience cannot be used')}")
        return self.reader.attributes


def _ensure_snapshots(
    store: StateStore, task_id: str, audiences: list[tuple[str, Mapping[str, Any]]], compiler: _Compiler
) -> None:
    """Take the missing ``refresh: once`` snapshots of a task (each in its own transaction)."""
    from sqlalchemy import func, literal, select

    from engine.state import directory_tables as dt
    from engine.state import content_digest

    meta = dt.snapshot_meta
    for audience_id, body in audiences:
        with store.writing() as conn:
            _advisory_lock(conn, store, f"audience-snapshot:{task_id}:{audience_id}")
            taken = conn.execute(
                select(meta.c.size).where(meta.c.task_id == task_id, meta.c.audience_id == audience_id)
            ).first()
            if taken is not None:
                continue
            ids = compiler.ids(compiler.audience(audience_id)).subquery()
            chosen = select(
                literal(task_id).label("task_id"), literal(audience_id).label("audience_id"), ids.c.user_id
            )
            conn.execute(dt.snapshots.insert().from_select(["task_id", "audience_id", "user_id"], chosen))
            s = dt.snapshots
            size = conn.execute(
                select(func.count()).select_from(s).where(s.c.task_id == task_id, s.c.audience_id == audience_id)
            ).scalar_one()
            conn.execute(
                meta.insert().values(
                    task_id=task_id,
                    audience_id=audience_id,
                    size=size,
                    audience_digest=content_digest(dict(body)),
                    taken_at=datetime.now(timezone.utc),
                )
            )
            _analyze(conn, dt.snapshots)


def _snapshots_taken(store: StateStore, task_id: str) -> set[str]:
    from sqlalchemy import select

    from engine.state import directory_tables as dt

    meta = dt.snapshot_meta
    with store.reading() as conn:
        return set(conn.execute(select(meta.c.audience_id).where(meta.c.task_id == task_id)).scalars())


# -- the task's members ------------------------------------------------------------------------


@dataclass
class _Query:
    """SELECTs whose rows are ``user_id, directory attributes (JSON text), directory opt_out``
    then ``attributes, opt_out`` per CSV overlay; each ordered by ``user_id``, disjoint, merged
    by the stream. ``counts``: the matching SELECT count(*)s."""

    selects: list[Any]
    overlays: int
    counts: list[Any] = field(default_factory=list)
    splits: list[_Split] = field(default_factory=list)  # the task's top audiences, compiled
    compiler: _Compiler | None = None


def _task_audiences(task_body: Mapping[str, Any]) -> list[str]:
    audiences = task_body.get("audiences") if isinstance(task_body, Mapping) else None
    if not isinstance(audiences, list) or not audiences:
        raise AudienceError("the task names no audiences")
    return list(dict.fromkeys(audiences))


def _prepare(
    store: StateStore,
    task_id: str | None,
    task_body: Mapping[str, Any],
    audience_bodies: Mapping[str, Mapping[str, Any]],
    *,
    snapshot: bool,
    attachments: Any,
) -> _Query:
    """Check and compile the task's audiences; materialise CSV/``users:`` lists and take the
    missing ``refresh: once`` snapshots (with ``snapshot``) on the way.

    Two query shapes, chosen by cost: when some audience selects by attributes the whole
    directory is scanned anyway, so members are ``users WHERE P`` in primary-key order (no sort,
    first rows at once) plus, merged in, listed ids that are not in the directory. When every
    audience is a list or a snapshot, the listed ids are joined to the directory instead, so the
    cost follows the lists, not the directory.
    """
    from engine.delivery.directory import known_attributes

    top = _task_audiences(task_body)
    compiler = _Compiler(store.backend, audience_bodies, known_attributes(store))

    lists: list[_ListSource] = []
    overlay_digests: list[str] = []
    once: list[tuple[str, Mapping[str, Any]]] = []
    for audience_id in top:
        if compiler.body(audience_id, ()).get("refresh") == "once":
            once.append((audience_id, compiler.bodies[audience_id]))
        for reached_id, body, positive in compiler.walk(audience_id):
            listed = _list_source(reached_id, body)
            if listed is not None:
                lists.append(listed)
                if positive and listed.kind == "csv" and listed.digest not in overlay_digests:
                    overlay_digests.append(listed.digest)
    # compile once before writing anything: unknown attributes and bad rules fail first
    for audience_id in top:
        compiler.split(audience_id, top=True)
    _ensure_lists(store, lists, attachments)

    if task_id is not None and once:
        taken = _snapshots_taken(store, task_id)
        if snapshot:
            missing = [(a, body) for a, body in once if a not in taken]
            if missing:
                _ensure_snapshots(store, task_id, missing, compiler)
                taken |= {a for a, _ in missing}
        compiler.snapshots = {a: (task_id, a) for a, _ in once if a in taken}

    splits = [compiler.split(audience_id, top=True) for audience_id in top]
    if any(part.scans for part in splits):
        query = _scan_query(compiler, splits, overlay_digests)
    else:
        query = _join_query(compiler, [compiler.audience(audience_id, top=True) for audience_id in top], overlay_digests)
    query.splits, query.compiler = splits, compiler
    return query


def _with_overlays(compiler: _Compiler, source: Any, key: Any, columns: list[Any], digests: list[str]) -> Any:
    from sqlalchemy import and_

    joined = source
    for number, digest in enumerate(digests):
        overlay = compiler.lists.alias(f"overlay_{number}")
        joined = joined.outerjoin(overlay, and_(overlay.c.digest == digest, overlay.c.user_id == key))
        columns += [compiler.as_text(overlay.c.attributes), overlay.c.opt_out]
    return joined


def _scan_query(compiler: _Compiler, splits: list[_Split], digests: list[str]) -> _Query:
    from sqlalchemy import exists, func, null, or_, select, union

    u = compiler.users
    inside = or_(*[part.directory for part in splits])
    columns = [u.c.user_id, compiler.as_text(u.c.attributes), u.c.opt_out]
    source = _with_overlays(compiler, u, u.c.user_id, columns, digests)
    selects = [select(*columns).select_from(source).where(inside).order_by(u.c.user_id)]
    counts = [select(func.count()).select_from(u).where(inside)]
    outside = [part.outside for part in splits if part.outside is not None]
    if outside:
        candidates = list({id(c): c for part in splits for c in part.candidates}.values())
        ids = (candidates[0] if len(candidates) == 1 else union(*candidates)).subquery("outside")
        where = [or_(*[test(ids.c.user_id) for test in outside]), ~exists().where(u.c.user_id == ids.c.user_id)]
        columns = [ids.c.user_id, null(), null()]
        source = _with_overlays(compiler, ids, ids.c.user_id, columns, digests)
        selects.append(select(*columns).select_from(source).where(*where).order_by(ids.c.user_id))
        counts.append(select(func.count()).select_from(ids).where(*where))
    return _Query(selects, len(digests), counts)


def _join_query(compiler: _Compiler, parts: list[_Pred | _Ids], digests: list[str]) -> _Query:
    from sqlalchemy import func, select, union

    u = compiler.users
    selects = [compiler.ids(part) for part in parts]
    ids = (selects[0] if len(selects) == 1 else union(*selects)).subquery("members")
    columns = [ids.c.user_id, compiler.as_text(u.c.attributes), u.c.opt_out]
    source = _with_overlays(compiler, ids.outerjoin(u, u.c.user_id == ids.c.user_id), ids.c.user_id, columns, digests)
    query = select(*columns).select_from(source).order_by(ids.c.user_id)
    return _Query([query], len(digests), [select(func.count()).select_from(ids)])


def task_members(
    store: StateStore,
    task_id: str,
    task_body: Mapping[str, Any],
    audience_bodies: Mapping[str, Mapping[str, Any]],
    *,
    snapshot: bool = True,
    batch_size: int = 5000,
    attachments: Any = None,
) -> Iterator[list[Member]]:
    """The members of a task's audiences, de-duplicated, in ``user_id`` order, in lists of at
    most ``batch_size``.

    ``store`` holds the directory; ``task_body["audiences"]`` names the audiences, whose bodies
    (as stored by apply) are in ``audience_bodies`` with every audience they include.
    ``snapshot=True`` takes the ``refresh: once`` snapshots not yet taken (the first delivery);
    with False such an audience is evaluated live until its snapshot exists. ``attachments``:
    see the module doc. Everything that can fail (unknown attribute, cycle, missing CSV, no
    directory) raises here, before the first batch; the rows are then streamed from one
    server-side cursor, so a million members never sit in memory together.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    prepared = _prepare(store, task_id, task_body, audience_bodies, snapshot=snapshot, attachments=attachments)
    return _stream(store, prepared, batch_size)


def _stream(store: StateStore, prepared: _Query, batch_size: int) -> Iterator[list[Member]]:
    build = _member_builder(prepared.overlays)
    with store.reading() as conn:
        if conn.dialect.name == "postgresql":
            # a cursor is planned for its first rows (an index scan: random heap reads); every row
            # is read here, so let the planner pick the plan that is fastest for all of them
            conn.exec_driver_sql("SET LOCAL cursor_tuple_fraction = 1.0")
            results = [
                conn.execution_options(stream_results=True, yield_per=batch_size).execute(query)
                for query in prepared.selects
            ]
            sources = [_partitions(result) for result in results]
        else:
            conn.exec_driver_sql("SELECT 1")  # begin: every cursor below reads one snapshot
            results = [_sqlite_cursor(conn, query) for query in prepared.selects]
            sources = [_fetchmany(cursor, batch_size) for cursor in results]
        try:
            if len(sources) == 1:
                for rows in sources[0]:
                    yield [build(row) for row in rows]
                return
            import heapq
            from operator import itemgetter

            merged = heapq.merge(*[_flatten(source) for source in sources], key=itemgetter(0))
            batch: list[Member] = []
            for row in merged:
                batch.append(build(row))
                if len(batch) >= batch_size:
                    yield batch
                    batch = []
            if batch:
                yield batch
        finally:
            for result in results:
                result.close()


def _partitions(result: Any) -> Iterator[Sequence[Any]]:
    yield from result.partitions()


def _fetchmany(cursor: Any, size: int) -> Iterator[Sequence[Any]]:
    while True:
        rows = cursor.fetchmany(size)
        if not rows:
            return
        yield rows


def _flatten(source: Iterator[Sequence[Any]]) -> Iterator[Any]:
    for rows in source:
        yield from rows


def _sqlite_cursor(conn: Connection, query: Any) -> Any:
    """The query on a DBAPI cursor of ``conn``: SQLite rows as plain tuples save a third of the
    per-member cost of Row objects. SQL and parameters come from SQLAlchemy's compiler."""
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    args = tuple(params[name] for name in compiled.positiontup)
    if not all(value is None or type(value) in (str, int, float) for value in args):  # pragma: no cover
        raise TypeError(f"unexpected parameter types in a membership query: {args!r}")
    cursor = conn.connection.driver_connection.cursor()
    cursor.execute(compiled.string, args)
    return cursor


def _member_builder(overlays: int) -> Callable[[Sequence[Any]], Member]:
    scan = json.JSONDecoder().scan_once  # C scanner: json.loads minus two Python layers and regexes

    def loads(text: str) -> dict:
        return scan(text, 0)[0]

    opt_memo: dict[Any, frozenset[str]] = {}
    empty: frozenset[str] = frozenset()

    def opt_outs(key: Any) -> frozenset[str]:
        found = opt_memo.get(key)
        if found is None:
            names: set[str] = set()
            for text in key if isinstance(key, tuple) else (key,):
                if text:
                    names.update(text.split("|"))
            found = opt_memo[key] = frozenset(names)
        return found

    if overlays == 0:

        def build(row: Sequence[Any]) -> Member:
            user_id, attributes, opt_out = row
            if attributes is None:
                values = {}
            elif type(attributes) is str:
                values = scan(attributes, 0)[0]
            else:
                values = attributes
            values["user_id"] = user_id
            return Member(user_id, values, opt_outs(opt_out) if opt_out else empty)

        return build

    def build_overlaid(row: Sequence[Any]) -> Member:
        user_id, attributes = row[0], row[1]
        if attributes is None:
            values = {}
        elif type(attributes) is str:
            values = loads(attributes)
        else:
            values = attributes
        # the first CSV audience the task lists wins: lay the last one first
        for index in range(len(row) - 2, 2, -2):
            extra = row[index]
            if extra is not None:
                values.update(loads(extra) if type(extra) is str else extra)
        values["user_id"] = user_id
        key = tuple(row[index] for index in range(2, len(row), 2))
        return Member(user_id, values, opt_outs(key) if any(key) else empty)

    return build_overlaid


def check_task_audiences(
    store: StateStore, task_id: str | None, task_body: Mapping[str, Any], audience_bodies: Mapping[str, Mapping[str, Any]]
) -> None:
    """Raise ``AudienceError`` (``NoDirectory`` among them) when the task's audiences cannot be
    evaluated against the directory in ``store`` now: an attribute the directory lost, an
    undefined audience, a cycle. Reads only (no list is materialised, no snapshot taken); an
    audience already snapshotted for ``task_id`` is its snapshot, whatever the directory has."""
    from engine.delivery.directory import known_attributes

    top = _task_audiences(task_body)
    compiler = _Compiler(store.backend, audience_bodies, known_attributes(store))
    if task_id is not None:
        taken = _snapshots_taken(store, task_id)
        compiler.snapshots = {a: (task_id, a) for a in top if a in taken and compiler.body(a, ()).get("refresh") == "once"}
    for audience_id in top:
        compiler.split(audience_id, top=True)


def audience_size(
    store: StateStore,
    task_body: Mapping[str, Any],
    audience_bodies: Mapping[str, Mapping[str, Any]],
    *,
    task_id: str | None = None,
    attachments: Any = None,
) -> int | None:
    """How many members the task has now (de-duplicated), for the plan; None when it cannot be
    known (an audience selects by attributes and no directory was imported, or a CSV's content
    is nowhere to be found).

    With ``task_id``, ``refresh: once`` audiences already snapshotted count their snapshot.
    Never takes snapshots; it may fill the content-addressed cache of CSV members.
    """
    from engine.delivery.directory import NoDirectory

    try:
        prepared = _prepare(store, task_id, task_body, audience_bodies, snapshot=False, attachments=attachments)
    except (NoDirectory, MissingContent):
        return None
    with store.reading() as conn:
        return sum(int(conn.execute(count).scalar_one()) for count in prepared.counts)


@dataclass(frozen=True)
class Membership:
    """A task's members as SQL, for counting in the database (``engine.delivery.forecast``):
    ``directory`` is a never-NULL predicate over a ``campaigns_users`` row (members in the
    directory); ``outside`` a SELECT of the member ids that are not in the directory (listed by
    a ``users:``/CSV audience or a snapshot), or None when there can be none."""

    directory: Any
    outside: Any | None


def task_membership(
    store: StateStore,
    task_body: Mapping[str, Any],
    audience_bodies: Mapping[str, Mapping[str, Any]],
    *,
    task_id: str | None = None,
    attachments: Any = None,
) -> Membership:
    """The task's membership as SQL expressions (what ``audience_size`` counts), never the
    members themselves. Takes no snapshot; may fill the cache of CSV members. Raises what
    ``task_members`` raises (``NoDirectory``, ``MissingContent``, ``AudienceError``)."""
    from sqlalchemy import exists, or_, select, union

    prepared = _prepare(store, task_id, task_body, audience_bodies, snapshot=False, attachments=attachments)
    compiler, splits = prepared.compiler, prepared.splits
    assert compiler is not None
    u = compiler.users
    directory = or_(*[part.directory for part in splits])
    tests = [part.outside for part in splits if part.outside is not None]
    if not tests:
        return Membership(directory, None)
    candidates = list({id(c): c for part in splits for c in part.candidates}.values())
    ids = (candidates[0] if len(candidates) == 1 else union(*candidates)).subquery("outside")
    outside = select(ids.c.user_id).where(
        or_(*[test(ids.c.user_id) for test in tests]), ~exists().where(u.c.user_id == ids.c.user_id)
    )
    return Membership(directory, outside)


def snapshot_info(store: StateStore, task_id: str) -> dict[str, tuple[int, datetime]]:
    """audience id -> (members, taken at) of the task's ``refresh: once`` snapshots."""
    from sqlalchemy import select

    from engine.state import directory_tables as dt

    meta = dt.snapshot_meta
    with store.reading() as conn:
        rows = conn.execute(select(meta.c.audience_id, meta.c.size, meta.c.taken_at).where(meta.c.task_id == task_id))
        return {row.audience_id: (row.size, row.taken_at) for row in rows}
