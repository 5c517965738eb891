"""The desired state: what ``apply`` would store for a repository, and the digests to compare.

Bodies (design notes, "Desired state bodies"):

- platform, template, creative, campaign: the resource's JSON view;
- task: the JSON view plus ``campaign`` (the folder it lives in);
- audience: the JSON view, plus ``csv_digest`` (sha256 of the CSV bytes) and ``csv_path``
  (repository-relative) for a ``csv`` source; apply stores the bytes as an attachment.

A task's *content* is what a pilot test approves: the task (without its ``status``, so pausing
and resuming keep the content and its pilot test), its creatives and their templates. Audiences
are not part of it.

Digests are computed only when needed and remembered per file (``engine.plan.cache``), so an
unchanged repository is compared with the state without serialising a single body.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from functools import cached_property
from pathlib import Path
from typing import Any

from engine.config.repository import Repository, Resource
from engine.config.safefile import open_regular
from engine.config.usercsv import CsvFile, CsvFileError, file_sha256
from engine.errors import CampaignsError
from engine.plan.cache import DigestCache
from engine.state.records import ResourceVersion, content_digest

CONTENT_EXCLUDES = ("status",)  # task fields that do not change what testers saw


def task_body(resource: Resource) -> dict[str, Any]:
    return {**resource.data, "campaign": resource.campaign}


def csv_source_path(resource: Resource) -> str | None:
    """Repository-relative path of an audience's CSV file, or None for other sources."""
    source = resource.data.get("source") or {}
    if "csv" not in source:
        return None
    if resource.attachments:
        return next(iter(sorted(resource.attachments)))
    return posixpath.normpath(posixpath.join(posixpath.dirname(resource.path), source["csv"]))


def _csv_path(root: Path, relative: str) -> str:
    """The CSV's path, refused when it no longer stays inside the repository (validation
    checked it; this guards against a link swapped in meanwhile)."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(root, relative))
    if not (real == real_root or real.startswith(real_root + os.sep)):
        raise CampaignsError(f"the audience file {relative} points outside the repository")
    return real


def read_csv(root: Path, relative: str) -> bytes:
    """The CSV's bytes, for ``apply`` to store (only a regular file is opened)."""
    try:
        descriptor = open_regular(_csv_path(root, relative))
    except ValueError as kind:
        raise CampaignsError(f"the audience file {relative} is {kind}, not a regular file") from None
    except OSError as problem:
        raise CampaignsError(f"cannot read the audience file {relative}: {problem.strerror}") from None
    with os.fdopen(descriptor, "rb") as handle:
        return handle.read()


def csv_sha256(root: Path, relative: str) -> str:
    """The sha256 of the CSV's bytes, streamed: plan never holds a CSV in memory."""
    try:
        return file_sha256(_csv_path(root, relative), relative)
    except CsvFileError as problem:
        raise CampaignsError(f"the audience file: {problem}") from None


def body_of(resource: Resource, root: Path) -> dict[str, Any]:
    """The body apply stores for ``resource``."""
    if resource.kind == "task":
        return task_body(resource)
    if resource.kind == "audience":
        relative = csv_source_path(resource)
        if relative is not None:
            return {**resource.data, "csv_digest": csv_sha256(root, relative), "csv_path": relative}
    return resource.data


def content_of(
    task: dict[str, Any], creatives: dict[str, dict[str, Any]], templates: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The value a task's content digest is taken over."""
    return {
        "task": {key: value for key, value in task.items() if key not in CONTENT_EXCLUDES},
        "creatives": creatives,
        "templates": templates,
    }


def source_key(resource: Resource) -> str:
    """What a body is a function of: the file's bytes, and the task's folder or the audience's CSV."""
    if resource.kind == "task":
        return f"{resource.digest}@{resource.campaign}"
    if resource.attachments:
        return resource.digest + "|" + ";".join(f"{p}={d}" for p, d in sorted(resource.attachments.items()))
    return resource.digest


class Desired:
    """The desired state of one repository: digests of every body, bodies on demand."""

    def __init__(self, repository: Repository, cache: DigestCache | None = None) -> None:
        self.repository = repository
        self.root = Path(repository.root)
        self.cache = cache if cache is not None else DigestCache(None, "")
        self._bodies: dict[str, dict[str, Any]] = {}
        self._digests: dict[str, str] = {}
        self._content_digests: dict[str, str] = {}
        self.resources: dict[str, Resource] = {resource.address: resource for resource in repository.resources()}

    def digest(self, address: str) -> str:
        """Content digest of one desired body (remembered per source across runs)."""
        found = self._digests.get(address)
        if found is None:
            key = source_key(self.resources[address])
            found = self.cache.body_digest(key)
            if found is None:
                found = content_digest(self.body(address))
                self.cache.put_body_digest(key, found)
            self._digests[address] = found
        return found

    @cached_property
    def digests(self) -> dict[str, str]:
        """address -> digest of every desired body."""
        remembered = self.cache.bodies
        used: set[str] = set()
        digests: dict[str, str] = {}
        for address, resource in self.resources.items():
            kind = resource.kind
            if kind == "task":
                key = f"{resource.digest}@{resource.campaign}"
            elif resource.attachments:
                key = source_key(resource)
            else:
                key = resource.digest
            used.add(key)
            found = remembered.get(key)
            if found is None:
                found = self.digest(address)
            digests[address] = found
        self._digests.update(digests)
        self.cache.used = used
        return digests

    # -- bodies ----------------------------------------------------------------------------

    def body(self, address: str) -> dict[str, Any]:
        found = self._bodies.get(address)
        if found is None:
            found = self._bodies[address] = body_of(self.resources[address], self.root)
        return found

    def version(self, address: str) -> ResourceVersion:
        resource = self.resources[address]
        return ResourceVersion(address, resource.kind, resource.id, self.body(address))

    def attachment(self, address: str) -> tuple[str, str, bytes] | None:
        """``(sha256, path, bytes)`` of an audience's CSV file, or None."""
        resource = self.resources[address]
        if resource.kind != "audience":
            return None
        relative = csv_source_path(resource)
        if relative is None:
            return None
        raw = read_csv(self.root, relative)
        return hashlib.sha256(raw).hexdigest(), relative, raw

    def attachment_file(self, address: str) -> tuple[str, str, CsvFile] | None:
        """``(sha256, path, CsvFile)`` of an audience's CSV file, or None: what plan sizes an
        audience from, streamed from the file (``attachment`` reads the bytes apply stores)."""
        resource = self.resources[address]
        relative = csv_source_path(resource) if resource.kind == "audience" else None
        if relative is None:
            return None
        digest = csv_sha256(self.root, relative)
        return digest, relative, CsvFile(_csv_path(self.root, relative), digest)

    # -- tasks -----------------------------------------------------------------------------

    def task_creatives(self, task_id: str) -> list[str]:
        return list(self.repository.tasks[task_id].data["creatives"])

    def task_templates(self, task_id: str) -> list[str]:
        """Template ids of the task's creatives, in first-use order, without repeats."""
        creatives = self.repository.creatives
        return list(dict.fromkeys(creatives[c].data["template"] for c in self.task_creatives(task_id)))

    def task_components(self, task_id: str) -> list[str]:
        """Addresses whose bodies make the task's content: the task, its creatives, their templates."""
        return (
            [f"task.{task_id}"]
            + [f"creative.{c}" for c in self.task_creatives(task_id)]
            + [f"template.{t}" for t in self.task_templates(task_id)]
        )

    def task_content(self, task_id: str) -> dict[str, Any]:
        return content_of(
            self.body(f"task.{task_id}"),
            {c: self.body(f"creative.{c}") for c in self.task_creatives(task_id)},
            {t: self.body(f"template.{t}") for t in self.task_templates(task_id)},
        )

    def task_content_digest(self, task_id: str) -> str:
        """Digest of the task's content (what ``campaigns test`` records and ``apply`` checks)."""
        found = self._content_digests.get(task_id)
        if found is not None:
            return found
        hasher = hashlib.blake2b(digest_size=16)
        for address in self.task_components(task_id):
            hasher.update(f"{address}={self.digest(address)}\n".encode())
        key = hasher.hexdigest()
        found = self.cache.content_digest(key)
        if found is None:
            found = content_digest(self.task_content(task_id))
            self.cache.put_content_digest(key, found)
        self._content_digests[task_id] = found
        return found


def task_content_digest(repository: Repository, task_id: str) -> str:
    """The content digest of one task of a repository."""
    repository.task(task_id)  # a clear error for an unknown task
    return content_digest(Desired(repository).task_content(task_id))
