"""The delivery ledger: what was decided for every (task, occurrence, user), and the claim
protocol that lets several executors share an occurrence without sending anything twice.

Protocol (tables in ``engine.state.ledger_tables``, statements in ``engine.delivery.ledger_sql``,
run through ``engine.state.dialect``)::

    claim   one transaction, the occurrence's progress row locked (PostgreSQL ``FOR UPDATE``;
            SQLite ``BEGIN IMMEDIATE``): take the next members after ``last_user`` from the
            task's member stream (ordered by user_id); insert one ledger row each -- ``pending``
            with its message id and creative, or ``suppressed`` / ``capped`` at once -- plus one
            claims row (executor, user range) for the pending ones; advance ``last_user``
            (``fanned`` when the stream is over); reserve the batch's stretch of the pacing
            timeline. COMMIT. Only now may the messages go to the provider.
    send    outside any transaction, with the message ids recorded above.
    finish  one transaction: ``failed`` rows (with their reason) and rows that needed several
            attempts one by one, then the sent rows of the range with one ``UPDATE ... BETWEEN``;
            the claims row is deleted (or, for a tail left unsent because the window closed or a
            stop was asked, shrunk to that tail and released: executor NULL). Rows the provider
            could not take (``provider-unavailable``) stay ``pending`` with their last error:
            the claim shrinks to start at the first of them and is released with ``retry_at``
            (backoff), so a later pass sends them again with the same ids. The occurrence is
            ``closed`` when it is fanned and no claims row is left.
    expire  once the occurrence's last window closed: the pending rows of released claims are
            ``expired`` (those the provider could not take keep ``provider-unavailable`` as
            their reason); those of dead executors' claims are ``unconfirmed`` -- they may have
            reached the provider before the crash, so they still count against the daily cap.

A crash between claim and finish leaves ``pending`` rows under a claims row whose executor is
dead. The next executor that looks at the occurrence takes such claims over (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL) and sends their pending rows again **with the ids already recorded**,
so a user never gets two different ids for one occurrence. Whether an executor is alive is
asked of the database it holds a lock in (PostgreSQL: a session advisory lock per executor;
SQLite: an ``flock`` on a file next to the database): both die with the process, so a
``kill -9`` is noticed at once, without leases or clocks.

Counts per status are kept on the occurrence's progress row in the same transactions (from the
rowcounts of the statements that change rows), and counts per reason in
``campaigns_delivery_reasons``, so reports never scan the ledger. Only ``--failed`` listings
read the ledger's failed rows, in key order and in chunks (``failures``).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select

from engine.delivery import ledger_sql as q
from engine.delivery.pacing import reserve_slot
from engine.state import ledger_tables as lt
from engine.state.dialect import Dialect, ProcessLocks, WriteQueue

if TYPE_CHECKING:
    from engine.state import StateStore

COUNTED = ("pending", "sent", "failed", "expired", "unconfirmed", "capped", "suppressed")
"""The statuses a report counts."""

MISSING_VARIABLE = "missing-variable"
TOO_LONG = "too-long"
PROVIDER_REJECTED = "provider-rejected"
PROVIDER_UNAVAILABLE = "provider-unavailable"
LEFT_AUDIENCE = "left-audience"
WINDOW_CLOSED = "window-closed"
"""Reasons (``campaigns_deliveries.reason``). ``failed``: ``missing-variable``, ``too-long``,
``render-timeout``, ``url-invalid``, ``template-syntax``, ``render-error`` (the renderer's:
``engine.delivery.render.REASONS``), ``provider-rejected`` (the provider's code in
the detail), ``left-audience`` (a batch sent again after a crash: the user is no longer a member).
``provider-unavailable`` rows stay pending and are retried; ``expired`` with that reason when the
window closed first. ``window-closed`` is how reports name the other expired rows (no reason
stored: the bulk expiry path writes none)."""

RETRY_BASE_S = 30.0
RETRY_CAP_S = 600.0
"""Backoff of a batch the provider could not take: ``min(cap, base * 2**retries)`` seconds."""



# --- values ---------------------------------------------------------------------------------


@dataclass
class Counts:
    """How many ledger rows of an occurrence (or a task, or everything) are in each status."""

    pending: int = 0
    sent: int = 0
    failed: int = 0
    expired: int = 0
    unconfirmed: int = 0
    capped: int = 0
    suppressed: int = 0

    def add(self, other: Counts) -> Counts:
        for name in COUNTED:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    @property
    def total(self) -> int:
        return sum(getattr(self, name) for name in COUNTED)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTED}


@dataclass(frozen=True)
class Progress:
    """The progress row of one occurrence."""

    task_id: str
    occurrence: str
    site: str
    channel: str
    status: str  # open | fanned | closed
    last_user: str | None
    finish_at: float
    started_at: float
    closed_at: float | None
    counts: Counts


@dataclass(slots=True)
class NewRow:
    """A ledger row a claim writes: ``pending`` (to send) or a final status decided at once."""

    user_id: str
    message_id: str
    status: str  # pending | suppressed | capped | expired
    creative: str | None = None
    cap_key: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class PendingRow:
    """A pending row of a claim: what must be (re)sent, with the id recorded for it."""

    user_id: str
    message_id: str
    creative: str | None


@dataclass
class Claim:
    """A batch this executor holds: the pending rows of ``[first_user, last_user]``."""

    claim_id: str
    task_id: str
    occurrence: str
    first_user: str
    last_user: str
    rows: list[PendingRow] | list[NewRow]  # user_id, message_id, creative of each pending row
    pace_start: float | None = None  # when its stretch of the pacing timeline begins
    recovered: bool = False  # taken over from a dead executor or a release
    retries: int = 0  # times its rows were put off because the provider could not take them


@dataclass
class ClaimResult:
    """What one claim transaction did. ``claim`` is None when nothing was left to send in the
    batch (all suppressed, capped or expired); ``members`` are the members it covered."""

    claim: Claim | None
    members: list[Any]
    rows: list[NewRow]
    exhausted: bool


@dataclass(slots=True)
class Outcome:
    """What became of one pending row: ``sent``, ``failed`` (with a ``reason`` and the detail in
    ``error``) or ``retry`` (the provider could not take it: left pending, sent again later)."""

    user_id: str
    status: str
    attempts: int = 1
    error: str | None = None
    reason: str | None = None


@dataclass
class Finished:
    """What ``finish`` wrote: rows per status and whether the occurrence is now closed."""

    sent: int = 0
    failed: int = 0
    unsent: int = 0
    retrying: int = 0  # left pending for a retry after ``retry_at``
    closed: bool = False
    lost: bool = False  # the claim had been taken over (this executor was thought dead)
    failed_by_reason: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed ledger row, as ``report --failed`` lists it."""

    occurrence: str
    user_id: str
    reason: str | None
    detail: str | None

    def to_json(self) -> dict[str, Any]:
        return {"occurrence": self.occurrence, "user_id": self.user_id, "reason": self.reason, "detail": self.detail}


Take = Callable[[str | None, int], tuple[list[Any], bool]]
"""``take(after, limit) -> (members, exhausted)``: the next members with user_id > after."""

Build = Callable[[list[Any], dict[str, int] | None], list[NewRow]]
"""``build(members, sent_today) -> rows``: one row per member; ``sent_today`` counts messages each
member already has on the claim's cap day (None when the site has no daily cap)."""


# --- executor presence ----------------------------------------------------------------------


class Presence:
    """This executor's proof of life, held for its lifetime, and the test of others' lives.

    PostgreSQL: a session advisory lock on a connection kept open. SQLite: an ``flock`` on
    ``<database>.executors/<id>``. The kernel or the server drops either when the process dies.
    """

    def __init__(self, store: StateStore, executor: str) -> None:
        self.store = store
        self.executor = executor
        self._locks = ProcessLocks(store, "executors", "executor:")

    def hold(self) -> None:
        self._locks.hold(self.executor)

    def release(self) -> None:
        self._locks.release()

    def alive(self, executors: Iterable[str]) -> set[str]:
        """Which of ``executors`` hold their lock right now (this one always counts as alive)."""
        wanted = set(executors)
        living = {self.executor} & wanted
        others = sorted(wanted - living)
        if not others:
            return living
        return living | self._locks.held(others)


# --- the ledger -----------------------------------------------------------------------------


class Ledger:
    """The ledger of one state, used by one executor (``executor`` is its id)."""

    def __init__(self, store: StateStore, executor: str | None = None) -> None:
        self.store = store
        self.executor = executor or uuid.uuid4().hex
        self.dialect = Dialect.for_store(store)
        self._queue = WriteQueue(store, "ledger-lock")  # on SQLite, executors queue for writes
        self._write = self._queue.writing
        self._run = self.dialect.run

    def close(self) -> None:
        self._queue.close()

    # -- executors --------------------------------------------------------------------------

    def register(self, now: float) -> None:
        """Record this executor (host, pid) for ``status``; refreshed by ``seen``."""
        e = lt.executors
        with self._write() as conn:
            conn.execute(e.delete().where(e.c.executor == self.executor))
            conn.execute(
                e.insert().values(
                    executor=self.executor, host=socket.gethostname(), pid=os.getpid(), started_at=now, seen_at=now
                )
            )

    def seen(self, now: float) -> None:
        e = lt.executors
        with self._write() as conn:
            conn.execute(e.update().where(e.c.executor == self.executor).values(seen_at=now))

    def unregister(self) -> None:
        e = lt.executors
        with self._write() as conn:
            conn.execute(e.delete().where(e.c.executor == self.executor))

    def forget_executors(self, executors: Iterable[str]) -> None:
        e = lt.executors
        gone = sorted(set(executors))
        if not gone:
            return
        with self._write() as conn:
            conn.execute(e.delete().where(e.c.executor.in_(gone)))

    def registered(self) -> list[str]:
        """The executors that registered and did not unregister (some may have died since)."""
        with self.store.reading() as conn:
            return list(conn.execute(select(lt.executors.c.executor)).scalars())

    def last_seen(self) -> float | None:
        """When any executor last polled (None: never)."""
        with self.store.reading() as conn:
            return conn.execute(select(func.max(lt.executors.c.seen_at))).scalar()

    # -- occurrence progress ----------------------------------------------------------------

    def progress(self, task_id: str | None = None) -> dict[tuple[str, str], Progress]:
        """(task, occurrence) -> progress, for one task or all of them."""
        o = lt.occurrences
        query = select(o)
        if task_id is not None:
            query = query.where(o.c.task_id == task_id)
        with self.store.reading() as conn:
            rows = conn.execute(query.order_by(o.c.task_id, o.c.finish_at)).all()
        return {(row.task_id, row.occurrence): _progress(row) for row in rows}

    def open_occurrence(
        self, task_id: str, occurrence: str, *, site: str, channel: str, finish_at: float, now: float
    ) -> Progress:
        """The occurrence's progress row, created (``open``) if it does not exist yet."""
        o = lt.occurrences
        key = (o.c.task_id == task_id) & (o.c.occurrence == occurrence)
        with self.store.reading() as conn:
            row = conn.execute(select(o).where(key)).one_or_none()
        if row is not None:
            return _progress(row)
        with self._write() as conn:
            self._run(conn, q.OPEN_OCCURRENCE, (task_id, occurrence, site, channel, finish_at, now))
            row = conn.execute(select(o).where(key)).one()
        return _progress(row)

    # -- claiming ---------------------------------------------------------------------------

    def claim(
        self,
        task_id: str,
        occurrence: str,
        *,
        limit: int,
        take: Take,
        build: Build,
        now: float,
        cap_key: str | None = None,
        cap_limit: int | None = None,
        pace: tuple[str, str, float] | None = None,
    ) -> ClaimResult | None:
        """Give the next ``limit`` members of the occurrence their ledger rows, in one
        transaction. None when the occurrence is no longer open (fanned or closed).

        ``pace`` is ``(site, channel, rate)``: the pending rows reserve ``n / rate`` seconds
        of the (site, channel) timeline; the claim's ``pace_start`` says when they may start.
        """
        run = self._run
        with self._write() as conn:
            # The commit is visible to every session at once; only a crash of the database
            # server within a fraction of a second could lose it, and then the same members
            # get the same (derived) message ids again: a re-send of a recorded id, which the
            # provider's idempotency key absorbs. So the claim need not wait for the WAL flush.
            self.dialect.relax_commit(conn)
            found = run(conn, q.LOCK_OCCURRENCE, (task_id, occurrence)).one_or_none()
            if found is None or found[0] != "open":
                return None
            after = found[1]
            members, exhausted = take(after, limit)
            sent_today: dict[str, int] | None = None
            if members and cap_key is not None and cap_limit is not None:
                sent_today = self._sent_on(conn, cap_key, members[0].user_id, members[-1].user_id)
            rows = build(members, sent_today)
            if len(rows) != len(members):
                raise AssertionError("build() must give one row per member")
            counts = Counts()
            pending = [r for r in rows if r.status == "pending"]  # NewRow has PendingRow's attributes
            counts.pending = len(pending)
            if len(pending) != len(rows):
                for row in rows:
                    if row.status != "pending":
                        setattr(counts, row.status, getattr(counts, row.status) + 1)
            if rows:
                self.dialect.bulk_copy(
                    conn,
                    q.DELIVERIES,
                    q.DELIVERY_COLUMNS,
                    [(task_id, occurrence, r.user_id, r.message_id, r.status, r.creative, r.cap_key, 0, now, r.error) for r in rows],
                )
            claim: Claim | None = None
            if pending:
                claim = Claim(uuid.uuid4().hex, task_id, occurrence, pending[0].user_id, pending[-1].user_id, pending)
                run(
                    conn,
                    q.INSERT_CLAIM,
                    (claim.claim_id, task_id, occurrence, self.executor, claim.first_user, claim.last_user, len(pending), now),
                )
                if pace is not None:
                    claim.pace_start = self._reserve(conn, pace, len(pending))
            last_user = members[-1].user_id if members else after
            status = "fanned" if exhausted else "open"
            self._bump(conn, task_id, occurrence, counts, last_user=last_user, status=status)
            if exhausted:
                self._close_if_done(conn, task_id, occurrence, now)
        return ClaimResult(claim, members, rows, exhausted)

    def _sent_on(self, conn: Connection, cap_key: str, first: str, last: str) -> dict[str, int]:
        """Messages per user on the cap day (rows that count keep their cap_key; see finish)."""
        self.dialect.lock_transaction(conn, "cap:" + cap_key)
        return {user_id: count for user_id, count in self._run(conn, q.SENT_ON_CAP_DAY, (cap_key, first, last))}

    def _reserve(self, conn: Connection, pace: tuple[str, str, float], count: int) -> float:
        site, channel, rate = pace
        self._run(conn, q.ENSURE_PACING, (site, channel))
        next_free = self._run(conn, q.LOCK_PACING, (site, channel)).scalar()
        start, free = reserve_slot(next_free, time.time(), count, rate)
        self._run(conn, q.SET_PACING, (free, site, channel))
        return start

    def _bump(
        self,
        conn: Connection,
        task_id: str,
        occurrence: str,
        counts: Counts,
        *,
        last_user: str | None = None,
        status: str | None = None,
    ) -> None:
        self._run(conn, q.BUMP_COUNTS, (*[getattr(counts, name) for name in COUNTED], last_user, status, task_id, occurrence))

    def _close_if_done(self, conn: Connection, task_id: str, occurrence: str, now: float) -> bool:
        """Fanned and no claim left (so no pending row): closed."""
        if self._run(conn, q.COUNT_CLAIMS, (task_id, occurrence)).scalar():
            return False
        return bool(self._run(conn, q.CLOSE_OCCURRENCE, (now, task_id, occurrence)).rowcount)

    # -- finishing --------------------------------------------------------------------------

    def finish(
        self,
        claim: Claim,
        cut: int,
        special: Sequence[Outcome],
        now: float,
        *,
        retry_at: float | None = None,
        held_back: str | None = None,
    ) -> Finished:
        """Record what became of a claim's rows, in one transaction.

        Rows ``[0, cut)`` of ``claim.rows`` were handed to the provider (or failed before it);
        they are ``sent`` (attempts 1) unless ``special`` says otherwise: failed ones (with
        their reason), sent ones that took more than one attempt, and ``retry`` ones the
        provider could not take. Rows from ``cut`` on were not sent (a stop or a closing window
        cut them off; messages go out in row order): they stay pending, and the claim shrinks
        to them and is released for anyone to send later. ``retry`` rows stay pending with
        their last error too; the claim then starts at the first of them and may not be taken
        again before ``retry_at``. ``held_back`` (with retry rows): the unsent tail was held back
        because the provider took nothing; its rows get ``provider-unavailable`` and this detail.
        """
        if not 0 <= cut <= len(claim.rows):
            raise ValueError("cut is outside the claim")
        if special and any(o.status not in ("sent", "failed", "retry") for o in special):
            raise ValueError("special outcomes are sent, failed or retry")
        outcomes = claim.rows
        done = Finished(unsent=len(outcomes) - cut)
        task_id, occurrence = claim.task_id, claim.occurrence
        failed = [o for o in special if o.status == "failed"]
        retried = [o for o in special if o.status == "sent"]
        again = [o for o in special if o.status == "retry"]
        if again and retry_at is None:
            raise ValueError("rows left for a retry need retry_at")
        run = self._run
        with self._write() as conn:
            # Losing this commit in a server crash only means the rows stay pending and are
            # sent again with their recorded ids, which is allowed (see ``claim``).
            self.dialect.relax_commit(conn)
            holder = run(conn, q.LOCK_CLAIM, (claim.claim_id,)).one_or_none()
            done.lost = holder is None or holder[0] != self.executor
            if again:  # out of the way of the range update below; pending again before the commit
                run(
                    conn,
                    q.PUT_OFF_ROW,
                    [
                        (o.attempts, o.error, o.reason or PROVIDER_UNAVAILABLE, now, task_id, occurrence, o.user_id)
                        for o in again
                    ],
                )
            if failed:  # a failed message does not count toward the daily cap
                by_reason: dict[str, list[Outcome]] = {}
                for o in failed:
                    by_reason.setdefault(o.reason or PROVIDER_REJECTED, []).append(o)
                for reason, group in by_reason.items():
                    count = run(
                        conn, q.FAIL_ROW, [(o.attempts, o.error, reason, now, task_id, occurrence, o.user_id) for o in group]
                    ).rowcount
                    done.failed += count
                    if count:
                        done.failed_by_reason[reason] = count
            if retried:
                done.sent += run(
                    conn, q.SEND_ROW, [(o.attempts, now, task_id, occurrence, o.user_id) for o in retried]
                ).rowcount
            if cut > 0:
                done.sent += run(
                    conn, q.SEND_RANGE, (now, task_id, occurrence, claim.rows[0].user_id, claim.rows[cut - 1].user_id)
                ).rowcount
            first_again = min((o.user_id for o in again), default=None)
            if again:
                done.retrying = run(
                    conn, q.PENDING_AGAIN, (task_id, occurrence, first_again, max(o.user_id for o in again))
                ).rowcount
                if held_back and cut < len(outcomes):
                    run(
                        conn,
                        q.HOLD_BACK_RANGE,
                        (PROVIDER_UNAVAILABLE, held_back, task_id, occurrence, claim.rows[cut].user_id, claim.rows[-1].user_id),
                    )
            if not done.lost:
                if done.retrying:
                    run(conn, q.RELEASE_FOR_RETRY, (first_again, done.retrying + len(outcomes) - cut, retry_at, claim.claim_id))
                elif cut < len(outcomes):
                    run(conn, q.RELEASE_TAIL, (claim.rows[cut].user_id, len(outcomes) - cut, claim.claim_id))
                else:
                    run(conn, q.DELETE_CLAIM, (claim.claim_id,))
            moved = Counts(sent=done.sent, failed=done.failed, pending=-(done.sent + done.failed))
            self._bump(conn, task_id, occurrence, moved)
            if done.failed_by_reason:
                self._bump_reasons(conn, task_id, occurrence, "failed", done.failed_by_reason)
            done.closed = self._close_if_done(conn, task_id, occurrence, now)
        return done

    def _bump_reasons(self, conn: Connection, task_id: str, occurrence: str, status: str, counts: dict[str, int]) -> None:
        self._run(
            conn,
            q.BUMP_REASONS,
            [(task_id, occurrence, status, reason, count) for reason, count in sorted(counts.items()) if count],
        )

    # -- recovery ---------------------------------------------------------------------------

    def claim_holders(self, task_id: str, occurrence: str) -> set[str | None]:
        """The executors holding claims of the occurrence (None: released claims)."""
        c = lt.claims
        with self.store.reading() as conn:
            return set(
                conn.execute(
                    select(c.c.executor).distinct().where(c.c.task_id == task_id, c.c.occurrence == occurrence)
                ).scalars()
            )

    def take_over(
        self, task_id: str, occurrence: str, holders: Iterable[str | None], *, now: float, limit: int = 1000
    ) -> list[Claim]:
        """Take over the claims of ``holders`` (dead executors, None for released claims) and
        return them with their pending rows, first user first. Claims another executor is
        taking over at the same moment are skipped (PostgreSQL ``SKIP LOCKED``), and so are
        released claims waiting for their ``retry_at``."""
        dead = sorted(h for h in holders if h is not None)
        released = None in set(holders)
        if not dead and not released:
            return []
        params: list[Any] = [task_id, occurrence]
        if released:
            params.append(now)
        params.extend(dead)
        taken: list[Claim] = []
        with self._write() as conn:
            rows = self._run(conn, q.claims_of(len(dead), released), (*params, limit)).all()
            for claim_id, first, last, retries in rows:
                self._run(conn, q.TAKE_CLAIM, (self.executor, claim_id))
                pending = [
                    PendingRow(user_id, message_id, creative)
                    for user_id, message_id, creative in self._run(
                        conn, q.CLAIM_PENDING_ROWS, (task_id, occurrence, first, last)
                    )
                ]
                taken.append(Claim(claim_id, task_id, occurrence, first, last, pending, recovered=True, retries=retries))
        return taken

    def waiting(self, task_id: str, occurrence: str, now: float) -> tuple[int, float | None]:
        """Rows of released claims put off until a later ``retry_at`` (the provider could not
        take them): how many, and the earliest moment one may be sent again."""
        with self.store.reading() as conn:
            count, first = self._run(conn, q.WAITING, (task_id, occurrence, now)).one()
        return int(count), first

    def release(self, claim: Claim) -> None:
        """Give a claim back unsent (a stop before anything of it went out)."""
        with self._write() as conn:
            self._run(conn, q.RELEASE_CLAIM, (claim.claim_id, self.executor))

    # -- expiry -----------------------------------------------------------------------------

    def expire_claims(self, task_id: str, occurrence: str, holders: Iterable[str | None], now: float) -> Counts:
        """The occurrence is over: the pending rows of released claims (never sent, or put off
        because the provider could not take them) become ``expired``; those of dead executors'
        claims (maybe handed to the provider before the crash) ``unconfirmed``, still counted
        against the daily cap. Claims of live executors are left to them."""
        holders = set(holders)
        dead = sorted(h for h in holders if h is not None)
        counts = Counts()
        unavailable = 0
        run = self._run
        with self._write() as conn:
            rows = run(conn, q.LOCK_CLAIMS, (task_id, occurrence)).all()
            for claim_id, executor, first, last in rows:
                if executor is not None and executor not in dead:
                    continue
                key = (task_id, occurrence, first, last)
                if executor is None:
                    unavailable += run(
                        conn,
                        q.EXPIRE_UNAVAILABLE,
                        (now, "the provider could not take it until the occurrence's last window closed; last error: ",
                         *key, PROVIDER_UNAVAILABLE),
                    ).rowcount
                    counts.expired += run(
                        conn, q.EXPIRE_RANGE, ("the occurrence's last window closed before it was sent", now, *key)
                    ).rowcount
                else:
                    counts.unconfirmed += run(
                        conn,
                        q.UNCONFIRM_RANGE,
                        (
                            "handed to the provider by an executor that stopped (crash) before the provider confirmed it; "
                            "the occurrence's last window closed before it could be sent again: it may have been "
                            "delivered once (counted against the daily cap)",
                            now,
                            *key,
                        ),
                    ).rowcount
                run(conn, q.DELETE_CLAIM, (claim_id,))
            counts.expired += unavailable
            if counts.expired or counts.unconfirmed:
                moved = Counts(expired=counts.expired, unconfirmed=counts.unconfirmed)
                moved.pending = -(counts.expired + counts.unconfirmed)
                self._bump(conn, task_id, occurrence, moved)
            if unavailable:
                self._bump_reasons(conn, task_id, occurrence, "expired", {PROVIDER_UNAVAILABLE: unavailable})
            self._close_if_done(conn, task_id, occurrence, now)
        return counts

    def close_if_done(self, task_id: str, occurrence: str, now: float, *, force: bool = False) -> bool:
        """Close the occurrence if it is fanned and no batch is in flight; with ``force`` also
        when it is not fanned (its remaining members cannot be known any more)."""
        with self._write() as conn:
            if force:
                self._run(conn, q.FAN_OCCURRENCE, (task_id, occurrence))
            return self._close_if_done(conn, task_id, occurrence, now)

    # -- reading ----------------------------------------------------------------------------

    def rows(self, task_id: str, occurrence: str | None = None) -> list[dict[str, Any]]:
        """Every ledger row of a task (or one occurrence), ordered by occurrence and user: for
        tests and audits, not for big occurrences."""
        d = lt.deliveries
        query = select(d).where(d.c.task_id == task_id)
        if occurrence is not None:
            query = query.where(d.c.occurrence == occurrence)
        with self.store.reading() as conn:
            return [dict(row._mapping) for row in conn.execute(query.order_by(d.c.occurrence, d.c.user_id))]

    def reasons(self, task_id: str) -> dict[str, dict[str, dict[str, int]]]:
        """occurrence -> status -> reason -> rows, from the counts kept with the rows."""
        r = lt.reasons
        found: dict[str, dict[str, dict[str, int]]] = {}
        with self.store.reading() as conn:
            for occurrence, status, reason, count in conn.execute(
                select(r.c.occurrence, r.c.status, r.c.reason, r.c.count).where(r.c.task_id == task_id)
            ):
                if count:
                    found.setdefault(occurrence, {}).setdefault(status, {})[reason] = int(count)
        return found

    def failures(self, task_id: str, occurrence: str | None = None, *, chunk: int = 2000) -> Iterator[Failure]:
        """The failed rows of a task (or one occurrence) in (occurrence, user) order, ``chunk``
        rows at a time, so a million failures are listed in constant memory, with no read
        transaction left open on SQLite while the list is written out (``Dialect.chunks``)."""
        statement = q.FAILED_ROWS
        params: list[Any] = [task_id]
        if occurrence is not None:
            statement += " AND occurrence = ?"
            params.append(occurrence)
        for rows in self.dialect.chunks(self.store, statement, params, ("occurrence", "user_id"), chunk):
            for key, user_id, reason, detail in rows:
                yield Failure(key, user_id, reason, detail)

    def counted(self, task_id: str | None = None) -> dict[tuple[str, str], Counts]:
        """Counts per (task, occurrence) computed from the ledger rows themselves (a full scan;
        the progress rows keep the same numbers incrementally)."""
        d = lt.deliveries
        query = select(d.c.task_id, d.c.occurrence, d.c.status, func.count()).group_by(
            d.c.task_id, d.c.occurrence, d.c.status
        )
        if task_id is not None:
            query = query.where(d.c.task_id == task_id)
        found: dict[tuple[str, str], Counts] = {}
        with self.store.reading() as conn:
            for task, occurrence, status, count in conn.execute(query):
                counts = found.setdefault((task, occurrence), Counts())
                setattr(counts, status, getattr(counts, status) + count)
        return found


def _progress(row: Any) -> Progress:
    return Progress(
        task_id=row.task_id,
        occurrence=row.occurrence,
        site=row.site,
        channel=row.channel,
        status=row.status,
        last_user=row.last_user,
        finish_at=row.finish_at,
        started_at=row.started_at,
        closed_at=row.closed_at,
        counts=Counts(**{name: getattr(row, name) for name in COUNTED}),
    )

