"""Audience membership: who a task delivers to, streamed in ``user_id`` order.

An audience's source is one of:

- ``users: [ids]`` -- these users, even those not in the directory (attributes from the directory
  when it has them);
- ``csv: file`` -- the CSV's rows; its columns are attributes laid over the directory's for the
  same user (an empty cell lets the directory's value show), an ``opt_out`` column adds opt-outs;
- ``where:`` -- ``any:`` of ``all:`` groups of conditions over directory attributes, compiled to
  parameterised SQL (``engine.delivery.audience_compiler``);
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
(``engine.delivery.directory.directory_store``, found by ``engine.config.settings.locate``); the cached CSV members and the snapshots live
next to the directory so they join it in SQL. CSV contents are read with ``.attachment(digest)``
of ``attachments`` (the state store, when the directory is in another database, or a mapping
``digest -> bytes`` such as the plan's repository files), falling back to ``store``.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from operator import itemgetter
from typing import Any

from sqlalchemy import and_, exists, func, literal, null, or_, select, union

from engine.config.usercsv import CsvFile, CsvFileError, UsersCsv
from engine.delivery.audience_compiler import Compiled, Compiler
from engine.delivery.audience_rules import (
    AudienceError,
    ListSource,
    MissingContent,
    list_source,
    task_audiences,
)
from engine.delivery.directory import NoDirectory, known_attributes
from engine.state import StateStore, content_digest
from engine.state import directory_tables as dt
from engine.state.dialect import Dialect


@dataclass(frozen=True, slots=True)
class Member:
    user_id: str
    attributes: dict  # what templates see as ``user.<name>`` (``user_id`` included)
    opt_out: frozenset[str]  # channels the user opted out of


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


def _ensure_lists(store: StateStore, sources: list[ListSource], attachments: Any) -> None:
    """Parse each CSV / ``users:`` list once per content digest into the lists table."""
    if not sources:
        return
    meta = dt.audience_list_meta
    dialect = Dialect.for_store(store)
    wanted = {source.digest: source for source in sources}
    with store.reading() as conn:
        have = set(conn.execute(select(meta.c.digest).where(meta.c.digest.in_(sorted(wanted)))).scalars())
    for digest, source in wanted.items():
        if digest in have:
            continue
        listed = _ListedRows(store, source, attachments)  # a missing CSV fails before any write
        with store.writing() as conn:
            dialect.lock_transaction(conn, f"audience-list:{digest}")  # one writer per cached item
            if conn.execute(select(meta.c.digest).where(meta.c.digest == digest)).first() is not None:
                continue  # another process made it meanwhile
            # streamed from the file into the table; a bad row or a changed file raises below,
            # which rolls the whole list back
            dialect.bulk_copy(conn, dt.audience_lists, ("digest", "user_id", "attributes", "opt_out"), ((digest, *row) for row in listed))
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
            dialect.analyze(conn, dt.audience_lists)


class _ListedRows:
    """The rows of a CSV or ``users:`` list as ``(user_id, attributes JSON or None, opt_out)``,
    read one at a time (a CSV is never held whole); ``finish`` then checks them."""

    def __init__(self, store: StateStore, source: ListSource, attachments: Any) -> None:
        self.source = source
        self.count = 0
        self.reader: Any = None
        if source.kind == "users":
            return
        path = source.body.get("csv_path") or source.body["source"]["csv"]
        content = _attachment(store, attachments, source.digest)
        if content is None:
            raise MissingContent.about(source.audience_id, f"the content of its CSV {path} is not in the state; apply first")
        try:
            self.reader = UsersCsv.from_file(content, str(path)) if isinstance(content, CsvFile) else UsersCsv.from_bytes(content, str(path))
        except CsvFileError as problem:
            raise AudienceError.about(source.audience_id, str(problem)) from None

    def __iter__(self) -> Iterator[tuple]:
        if self.reader is None:
            for user_id in sorted(set(self.source.body["source"]["users"])):
                self.count += 1
                yield user_id, None, None
            return
        try:
            for user_id, text, opt_out in self.reader.rows():
                self.count += 1
                yield user_id, None if text == "{}" else text, opt_out
        except CsvFileError as problem:
            raise AudienceError.about(self.source.audience_id, str(problem)) from None

    def finish(self) -> list[str]:
        """The list's attribute columns, once every row was read and found good."""
        if self.reader is None:
            return []
        try:
            self.reader.verify()  # the rows are those of the content digest they are kept under
        except CsvFileError as problem:
            raise AudienceError.about(self.source.audience_id, str(problem)) from None
        if self.reader.problem_count:
            raise AudienceError.about(self.source.audience_id, self.reader.rejection("the audience cannot be used"))
        return self.reader.attributes


def _ensure_snapshots(
    store: StateStore, task_id: str, audiences: list[tuple[str, Mapping[str, Any]]], compiler: Compiler
) -> None:
    """Take the missing ``refresh: once`` snapshots of a task (each in its own transaction)."""
    meta = dt.snapshot_meta
    dialect = Dialect.for_store(store)
    for audience_id, body in audiences:
        with store.writing() as conn:
            dialect.lock_transaction(conn, f"audience-snapshot:{task_id}:{audience_id}")
            taken = conn.execute(
                select(meta.c.size).where(meta.c.task_id == task_id, meta.c.audience_id == audience_id)
            ).first()
            if taken is not None:
                continue
            ids = compiler.compile(audience_id).ids.subquery()
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
            dialect.analyze(conn, dt.snapshots)


def _snapshots_taken(store: StateStore, task_id: str) -> set[str]:
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
    compiled: list[Compiled] = field(default_factory=list)  # the task's top audiences
    compiler: Compiler | None = None


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
    top = task_audiences(task_body)
    compiler = Compiler(Dialect.for_store(store), audience_bodies, known_attributes(store))

    lists: list[ListSource] = []
    overlay_digests: list[str] = []
    once: list[tuple[str, Mapping[str, Any]]] = []
    for audience_id in top:
        if compiler.body(audience_id, ()).get("refresh") == "once":
            once.append((audience_id, compiler.bodies[audience_id]))
        for reached_id, body, positive in compiler.walk(audience_id):
            listed = list_source(reached_id, body)
            if listed is not None:
                lists.append(listed)
                if positive and listed.kind == "csv" and listed.digest not in overlay_digests:
                    overlay_digests.append(listed.digest)
    # compile once before writing anything: unknown attributes and bad rules fail first
    for audience_id in top:
        compiler.compile(audience_id, top=True)
    _ensure_lists(store, lists, attachments)

    if task_id is not None and once:
        taken = _snapshots_taken(store, task_id)
        if snapshot:
            missing = [(a, body) for a, body in once if a not in taken]
            if missing:
                _ensure_snapshots(store, task_id, missing, compiler)
                taken |= {a for a, _ in missing}
        compiler.snapshots = {a: (task_id, a) for a, _ in once if a in taken}

    splits = [compiler.compile(audience_id, top=True) for audience_id in top]
    if any(part.scans for part in splits):
        query = _scan_query(compiler, splits, overlay_digests)
    else:
        query = _join_query(compiler, splits, overlay_digests)
    query.compiled, query.compiler = splits, compiler
    return query


def _with_overlays(compiler: Compiler, source: Any, key: Any, columns: list[Any], digests: list[str]) -> Any:
    joined = source
    for number, digest in enumerate(digests):
        overlay = compiler.lists.alias(f"overlay_{number}")
        joined = joined.outerjoin(overlay, and_(overlay.c.digest == digest, overlay.c.user_id == key))
        columns += [compiler.as_text(overlay.c.attributes), overlay.c.opt_out]
    return joined


def _scan_query(compiler: Compiler, splits: list[Compiled], digests: list[str]) -> _Query:
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


def _join_query(compiler: Compiler, parts: list[Compiled], digests: list[str]) -> _Query:
    u = compiler.users
    selects = [part.ids for part in parts]
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
        sources, results = prepared.compiler.dialect.streams(conn, prepared.selects, batch_size)
        try:
            if len(sources) == 1:
                for rows in sources[0]:
                    yield [build(row) for row in rows]
                return
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


def _flatten(source: Iterator[Sequence[Any]]) -> Iterator[Any]:
    for rows in source:
        yield from rows


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
    top = task_audiences(task_body)
    compiler = Compiler(Dialect.for_store(store), audience_bodies, known_attributes(store))
    if task_id is not None:
        taken = _snapshots_taken(store, task_id)
        compiler.snapshots = {a: (task_id, a) for a in top if a in taken and compiler.body(a, ()).get("refresh") == "once"}
    for audience_id in top:
        compiler.compile(audience_id, top=True)


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
    prepared = _prepare(store, task_id, task_body, audience_bodies, snapshot=False, attachments=attachments)
    compiler, splits = prepared.compiler, prepared.compiled
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
    meta = dt.snapshot_meta
    with store.reading() as conn:
        rows = conn.execute(select(meta.c.audience_id, meta.c.size, meta.c.taken_at).where(meta.c.task_id == task_id))
        return {row.audience_id: (row.size, row.taken_at) for row in rows}
