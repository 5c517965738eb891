""""No changes", answered without loading the repository when none of its files changed.

Loading a 20,000-file repository, even from the validation cache, costs about as much as parsing
it. Most plans in CI and on a laptop are made over files that have not changed since the last
apply or the last plan that found nothing to do, so those remember a summary of the repository:
the size and modification time of every file (like git's index), every desired digest, and each
task's wanted status. When every file still has the same size and time, and the state holds
exactly those digests with every task in the status its file asks for, the plan is "no changes";
anything else, however small, takes the full path (validation and planner).

A file modified less than ``RACY_NS`` before the repository was read is never trusted (it could
change again within the same timestamp tick), so the summary is only written when every file is
older than that. The summary is dropped when the engine's code changes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
import marshal
import os
from pathlib import Path
from typing import TYPE_CHECKING

from engine.plan.cache import CACHE_FILE, _engine_key
from engine.plan.model import Plan, StatusChange

if TYPE_CHECKING:
    from engine.plan.desired import Desired
    from engine.plan.source import StateSource

SUMMARY_FILE = CACHE_FILE.with_name("plan-summary.marshal")
FINGERPRINT_FILE = CACHE_FILE.with_name("plan-summary.key")
RACY_NS = 2_000_000_000
_FOLDERS = ("templates", "audiences", "creatives", "campaigns")
_SETTLED = {"active": ("running",), "paused": ("paused", "testing")}


def list_files(root: Path) -> dict[str, tuple[int, int]]:
    """Every YAML file a repository could define resources in: relative path -> (mtime_ns, size)."""
    found: dict[str, tuple[int, int]] = {}
    base = str(root)
    with os.scandir(base) as entries:
        for entry in entries:
            if entry.is_file() and entry.name.endswith((".yaml", ".yml")):
                stat = entry.stat()
                found[entry.name] = (stat.st_mtime_ns, stat.st_size)
    for folder in _FOLDERS:
        stack = [(os.path.join(base, folder), folder)]
        while stack:
            directory, relative = stack.pop()
            try:
                entries = os.scandir(directory)
            except (FileNotFoundError, NotADirectoryError):
                continue
            with entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append((entry.path, f"{relative}/{entry.name}"))
                    elif entry.name.endswith((".yaml", ".yml")):
                        stat = entry.stat()
                        found[f"{relative}/{entry.name}"] = (stat.st_mtime_ns, stat.st_size)
    return found


def _stat(root: Path, relative: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(os.path.join(root, relative))
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def fingerprint(files: dict[str, tuple[int, int]], attachments: dict[str, tuple[int, int] | None]) -> str:
    """One digest of every file's path, time and size (what the summary is valid for)."""
    hasher = hashlib.blake2b(_engine_key().encode(), digest_size=16)
    hasher.update(marshal.dumps((sorted(files.items()), sorted(attachments.items()))))
    return hasher.hexdigest()


def remember(desired: Desired, read_since_ns: int) -> bool:
    """Write the summary of a repository loaded (valid) after ``read_since_ns``; False when some
    file is too recent to be trusted (or the cache cannot be written)."""
    repository = desired.repository
    root = Path(repository.root)
    files = list_files(root)
    attachments: dict[str, tuple[int, int] | None] = {}
    for resource in repository.audiences.values():
        for relative in resource.attachments:
            found = _stat(root, relative)
            if found is None:
                return False
            attachments[relative] = found
    horizon = read_since_ns - RACY_NS
    if any(mtime >= horizon for mtime, _ in files.values()) or any(m >= horizon for m, _ in attachments.values()):  # type: ignore[misc]
        forget(root)
        return False
    wants = {task_id: resource.data.get("status", "active") for task_id, resource in repository.tasks.items()}
    stamp = fingerprint(files, attachments)
    summary = (stamp, sorted(attachments), desired.digests, wants, repository.digest)
    try:
        for path, value in ((root / SUMMARY_FILE, summary), (root / FINGERPRINT_FILE, (stamp, sorted(attachments)))):
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            with open(temporary, "wb") as handle:
                marshal.dump(value, handle)
            os.replace(temporary, path)
    except OSError:
        return False
    return True


def forget(root: Path) -> None:
    for name in (FINGERPRINT_FILE, SUMMARY_FILE):
        try:
            (Path(root) / name).unlink()
        except OSError:
            pass


@dataclass(frozen=True)
class Summary:
    """What a plan that found nothing to do remembered of the repository."""

    digests: dict[str, str]
    wants: dict[str, str]
    repository_digest: str


def remembered(root: Path) -> Summary | None:
    """The summary, when no file of the repository changed since it was written (else None)."""
    root = Path(root).resolve()
    try:
        with open(root / FINGERPRINT_FILE, "rb") as handle:
            stamp, attachment_paths = marshal.load(handle)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    files = list_files(root)
    if fingerprint(files, {path: _stat(root, path) for path in attachment_paths}) != stamp:
        return None
    try:
        with open(root / SUMMARY_FILE, "rb") as handle:
            stamp_again, _, digests, wants, repository_digest = marshal.load(handle)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if stamp_again != stamp:
        return None
    return Summary(digests, wants, repository_digest)


def noop_plan(
    root: Path | Summary | None, source: StateSource, now: dt.datetime | None = None
) -> Plan | None:
    """The plan when nothing changed since the summary was written and the state matches it;
    None whenever the full path is needed. ``root`` may be a ``remembered()`` summary already."""
    summary = root if isinstance(root, Summary) or root is None else remembered(root)
    if summary is None:
        return None
    digests, wants, repository_digest = summary.digests, summary.wants, summary.repository_digest
    snapshot = source.snapshot()
    stored = snapshot.digests
    if len(stored) < len(digests):
        return None
    for address, digest in digests.items():
        if stored.get(address) != digest:
            return None
    states = snapshot.task_states
    for task_id, want in wants.items():
        state = states.get(task_id)
        if state is None or state.status not in _SETTLED[want]:
            return None
    noops: list[tuple[str, str, StatusChange | None]] = []
    statuses: dict[str, StatusChange] = {}
    for address, digest in stored.items():
        status = None
        if address.startswith("task."):
            state = states.get(address[5:])
            if address not in digests and (state is None or state.status != "completed"):
                return None  # a task to complete: the full path says so
            if state is not None:
                status = statuses.get(state.status)
                if status is None:
                    status = statuses[state.status] = StatusChange(state.status, state.status)
        elif address not in digests:
            return None  # something to delete: the full path says what
        noops.append((address, digest, status))
    now = now or dt.datetime.now(dt.timezone.utc)
    return Plan(
        lineage=snapshot.lineage,
        serial=snapshot.serial,
        repository_digest=repository_digest,
        created_at=now.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        state=snapshot.display,
        changes=[],
        noops=noops,
    )
