""""No changes", answered without loading the repository when none of its files changed.

Loading a 20,000-file repository, even from the validation cache, costs about as much as parsing
it. Most plans in CI and on a laptop are made over files that have not changed since the last
apply or the last plan that found nothing to do, so those remember a summary of the repository:
the content digest of every file (and of every CSV an audience reads), every desired digest,
each task's wanted status, and the user directory's attribute names (validation checks audience
rules against them). When every file still has the same content, and the state holds exactly
those digests with every task in the status its file asks for and the same directory attributes,
the plan is "no changes"; anything else, however small, takes the full path (validation and
planner).

Files are compared by content, never by time stamps: the summary is written only when the files
on disk are byte for byte the ones that were planned. It is dropped when the engine's code changes.
It is kept by ``engine.localcache`` (outside the work tree, authenticated); ``apply`` writes it
after an apply but never reads it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import marshal
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine import localcache
from engine.clock import now as clock_now
from engine.plan import lifecycle
from engine.plan.cache import _engine_key
from engine.plan.model import Plan, StatusChange
from engine.state.records import utc_iso
from engine.validation.cache import content_digest, files_key

if TYPE_CHECKING:
    from engine.plan.desired import Desired
    from engine.plan.source import StateSnapshot, StateSource
    from engine.validation.pipeline import RepositoryFiles

SUMMARY_FILE = "plan-summary.marshal"
FINGERPRINT_FILE = "plan-summary.key"
_SEPARATE = "a user directory of its own"  # platform.yaml's user_directory: always the full path


def fingerprint(files_key: str, attachments: dict[str, str | None]) -> str:
    """One digest of every file's path and content (what the summary is valid for)."""
    hasher = hashlib.blake2b(_engine_key().encode(), digest_size=16)
    hasher.update(marshal.dumps((files_key, sorted(attachments.items()))))
    return hasher.hexdigest()


def remember(desired: Desired, snapshot: StateSnapshot) -> bool:
    """Write the summary of a planned repository (the content that was planned, file by file,
    against the state read as ``snapshot``); False when the cache could not be written."""
    repository = desired.repository
    root = Path(repository.root)
    files = {resource.path: resource.digest for resource in repository.resources()}
    attachments: dict[str, str | None] = {}
    for resource in repository.audiences.values():
        attachments.update(resource.attachments)
    wants = {task_id: resource.data.get("status", "active") for task_id, resource in repository.tasks.items()}
    # the directory validation checked against; one other than the state's cannot be compared cheaply
    directory = _SEPARATE if repository.platform.data.get("user_directory") else snapshot.attributes
    stamp = fingerprint(files_key(list(files.items())), attachments)
    key = _engine_key()
    summary = (stamp, desired.digests, wants, repository.digest, directory)
    return localcache.dump(root, SUMMARY_FILE, key, summary) and localcache.dump(
        root, FINGERPRINT_FILE, key, (stamp, sorted(attachments))
    )


def forget(root: Path) -> None:
    localcache.forget(root, FINGERPRINT_FILE, SUMMARY_FILE)


@dataclass(frozen=True)
class Summary:
    """What a plan that found nothing to do remembered of the repository."""

    digests: dict[str, str]
    wants: dict[str, str]
    repository_digest: str
    directory: tuple[str, ...] | str | None  # the directory's attribute names (or _SEPARATE)


def remembered(files: RepositoryFiles) -> Summary | None:
    """The summary, when every file of the repository (as just read) has the content it had when
    the summary was written (else None)."""
    root = files.root
    key = _engine_key()
    if files.problems:
        return None
    remembered_files = localcache.load(root, FINGERPRINT_FILE, key)
    if not isinstance(remembered_files, tuple):
        return None
    stamp, attachment_paths = remembered_files
    if fingerprint(files.key, {path: content_digest(str(root), path) for path in attachment_paths}) != stamp:
        return None
    summary = localcache.load(root, SUMMARY_FILE, key)
    if not isinstance(summary, tuple) or len(summary) != 5 or summary[0] != stamp:
        return None
    _, digests, wants, repository_digest, directory = summary
    return Summary(digests, wants, repository_digest, directory)


def noop_plan(summary: Summary | None, source: StateSource, now: dt.datetime | None = None) -> Plan | None:
    """The plan when nothing changed since the summary was written and the state matches it;
    None whenever the full path is needed."""
    if summary is None:
        return None
    digests, wants, repository_digest = summary.digests, summary.wants, summary.repository_digest
    snapshot = source.snapshot()
    if summary.directory == _SEPARATE or summary.directory != snapshot.attributes:
        return None  # validation would check audience rules against other attributes
    stored = snapshot.digests
    if len(stored) < len(digests):
        return None
    for address, digest in digests.items():
        if stored.get(address) != digest:
            return None
    states = snapshot.task_states
    for task_id, want in wants.items():
        state = states.get(task_id)
        if state is None or not lifecycle.settled(want, state.status):
            return None
    noops: list[tuple[str, str, StatusChange | None]] = []
    statuses: dict[str, StatusChange] = {}
    for address, digest in stored.items():
        status = None
        if address.startswith("task."):
            state = states.get(address[5:])
            if address not in digests and (state is None or state.status != lifecycle.COMPLETED):
                return None  # a task to complete: the full path says so
            if state is not None:
                status = statuses.get(state.status)
                if status is None:
                    status = statuses[state.status] = StatusChange(state.status, state.status)
        elif address not in digests:
            return None  # something to delete: the full path says what
        noops.append((address, digest, status))
    now = now or clock_now()
    return Plan(
        lineage=snapshot.lineage,
        serial=snapshot.serial,
        repository_digest=repository_digest,
        created_at=utc_iso(now),
        state=snapshot.display,
        changes=[],
        noops=noops,
        drift=snapshot.drift,
    )
