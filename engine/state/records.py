"""What the state holds, as plain values: no database types leak out of the store.

Also the one canonical JSON form and content digest, so that the plan (which digests the
repository) and the store (which digests what it writes) can never disagree.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from typing import Any, Literal

TaskStatus = Literal["draft", "testing", "running", "paused", "completed"]
TASK_STATUSES: tuple[str, ...] = ("draft", "testing", "running", "paused", "completed")

ApprovalKind = Literal["github", "manual"]


def utc_iso(moment: datetime | None) -> str | None:
    """An instant as ISO 8601 UTC to the second (``...Z``); naive values are UTC (SQLite returns them)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def canonical_json(value: Any) -> str:
    """The one JSON text of a value: sorted keys, no spaces, UTF-8 kept, no NaN.

    Equal values give equal text, so the sha256 of it is a content digest.
    Raises TypeError/ValueError for values JSON cannot hold (dates must be strings already).
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def digest_text(text: str) -> str:
    """sha256 hex digest of a canonical JSON text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def content_digest(value: Any) -> str:
    """sha256 hex digest of ``canonical_json(value)``."""
    return digest_text(canonical_json(value))


@dataclass(frozen=True)
class StateMeta:
    """Identity and version of a state: lineage never changes, serial rises by one per apply.
    A state that does not exist yet has lineage None and serial 0."""

    lineage: str | None
    serial: int
    schema_version: int


@dataclass(frozen=True, eq=False)
class ResourceVersion:
    """A resource as it should be stored: canonical text and digest are computed once, here.

    Build one per repository resource when planning, compare ``.digest`` with
    ``StateStore.resource_digests()``, and hand the same objects to ``Transaction.put_resources``
    so nothing is serialised twice.
    """

    address: str
    kind: str
    id: str
    body: dict[str, Any]
    canonical: str = field(init=False, repr=False)
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        try:
            text = canonical_json(self.body)
        except (TypeError, ValueError) as problem:
            raise ValueError(f"{self.address}: body is not plain JSON: {problem}") from None
        object.__setattr__(self, "canonical", text)
        object.__setattr__(self, "digest", digest_text(text))


@dataclass(frozen=True, eq=False)
class StoredResource:
    """The last applied version of a resource. ``body`` is parsed from JSON on first access."""

    address: str
    kind: str
    id: str
    digest: str
    serial: int  # the serial of the apply that last changed it
    canonical: str = field(repr=False)

    @cached_property
    def body(self) -> dict[str, Any]:
        return json.loads(self.canonical)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StoredResource):
            return NotImplemented
        return (self.address, self.kind, self.id, self.digest, self.serial) == (
            other.address,
            other.kind,
            other.id,
            other.digest,
            other.serial,
        )

    def __hash__(self) -> int:
        return hash((self.address, self.digest, self.serial))

    def to_json(self) -> dict[str, Any]:
        """What ``state list --format json`` shows of it (``state show`` adds the body)."""
        return {"address": self.address, "kind": self.kind, "id": self.id, "digest": self.digest, "serial": self.serial}


@dataclass(frozen=True)
class TaskStateWrite:
    """A task status to record in an apply; ``content_digest`` is the content the status refers to."""

    task_id: str
    status: TaskStatus
    content_digest: str | None = None

    def __post_init__(self) -> None:
        if self.status not in TASK_STATUSES:
            raise ValueError(f"task {self.task_id}: unknown status {self.status!r}")


@dataclass(frozen=True)
class TaskState:
    """A task's recorded status. ``since`` is when the status last changed; ``updated_at`` the last write."""

    task_id: str
    status: TaskStatus
    content_digest: str | None
    since: datetime
    updated_at: datetime
    serial: int  # serial of the apply that last wrote it (unchanged by pilot tests)

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "since": utc_iso(self.since), "content_digest": self.content_digest}


@dataclass(frozen=True)
class PilotResult:
    """One pilot notification: sent to one tester on one channel (for one creative, say so in detail)."""

    tester: str
    channel: str
    passed: bool
    detail: str = ""


@dataclass(frozen=True)
class PilotTestRun:
    """One ``campaigns test`` of a task's content. It passes when it has results and all of them passed."""

    run_id: str
    task_id: str
    content_digest: str
    tested_at: datetime
    results: tuple[PilotResult, ...]

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(result.passed for result in self.results)

    def to_json(self) -> dict[str, Any]:
        """The run's outcome as ``state show`` shows it (without the per-tester results)."""
        return {"tested_at": utc_iso(self.tested_at), "passed": self.passed, "content_digest": self.content_digest}


@dataclass(frozen=True)
class Approval:
    """Evidence that an apply was approved: a merged pull request, or a named person and reason."""

    kind: ApprovalKind
    approved_by: str  # github: the PR's merged_by login; manual: --approved-by
    reason: str  # github: the PR body; manual: --reason
    pr_number: int | None = None
    author: str | None = None  # the PR's author
    merge_commit: str | None = None
    pr_title: str | None = None
    pr_url: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("github", "manual"):
            raise ValueError(f"unknown approval kind {self.kind!r}")

    @property
    def merged_by(self) -> str | None:
        return self.approved_by if self.kind == "github" else None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "approved_by": self.approved_by,
            "reason": self.reason,
            "pr_number": self.pr_number,
            "author": self.author,
            "merged_by": self.merged_by,
            "merge_commit": self.merge_commit,
            "pr_title": self.pr_title,
            "pr_url": self.pr_url,
        }


@dataclass(frozen=True, eq=False)
class HistoryEntry:
    """One apply, as recorded: never changed afterwards."""

    serial: int
    lineage: str
    applied_at: datetime
    applied_by: str
    approval: Approval | None
    summary: dict[str, Any]
    changes_json: str | None = field(repr=False, default=None)

    @cached_property
    def changes(self) -> list[Any]:
        """The list of changes the apply made (empty when loaded with ``with_changes=False``)."""
        return json.loads(self.changes_json) if self.changes_json else []

    def to_json(self) -> dict[str, Any]:
        """One apply as ``state history --format json`` lists it."""
        return {
            "event": "apply",
            "serial": self.serial,
            "lineage": self.lineage,
            "applied_at": utc_iso(self.applied_at),
            "applied_by": self.applied_by,
            "approval": None if self.approval is None else self.approval.to_json(),
            "summary": self.summary,
            "changes": self.changes,
        }


@dataclass(frozen=True)
class LockInfo:
    """Who holds (or held) the state lock. ``held`` says whether the lock is really taken right now:
    False means the row is stale (its process died) and the next ``lock()`` will overwrite it."""

    lock_id: str
    user: str
    host: str
    pid: int
    operation: str
    acquired_at: datetime
    held: bool = True

    def describe(self) -> str:
        when = self.acquired_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        return (
            f"{self.user}@{self.host} pid {self.pid} ({self.operation}) since {when}, lock id {self.lock_id}"
        )
