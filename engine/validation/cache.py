"""Validation results remembered between runs, never served when an input they depended on changed.

Two caches, both kept by ``engine.localcache`` (outside the work tree, authenticated):

- ``ValidationCache``: each file's own result (``filecheck.FileResult``), for the exact bytes
  of that file and the exact content of every other file the result depended on (its *inputs*);
- ``ResultCache``: the last complete result of ``validate``, for the exact set of files, the
  same discovery problems, the same user directory attributes (the ``unknown-attribute`` rule)
  and the same content of every file the rules read besides the resource files.

What a result depended on besides its own bytes is declared here, in :func:`inputs_of`: today
the CSV file an audience names (``source.csv``), whatever the rules then do with it. A per-file
check that reads another file declares it in its facts as ``facts["reads"] = {path: fingerprint}``
(see :func:`fingerprint`). Both caches are dropped whenever the engine's code changes
(``localcache.code_key``).

Inputs are fingerprinted before the rules read them, so an edit racing a run can only cause a
miss next time, never a stale hit.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import posixpath
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine import localcache

CACHE_FILE = "validate-files.marshal"
RESULT_FILE = "validate-result.marshal"
READS = "reads"  # key of a FileResult's facts naming the other files the check read


def _engine_key() -> str:
    return localcache.code_key()


def _real_inside(root: str, relative: str) -> str | None:
    """The real path of ``relative`` when it stays inside the repository at ``root``."""
    real = os.path.realpath(os.path.join(root, relative))
    real_root = os.path.realpath(root)
    return real if real == real_root or real.startswith(real_root + os.sep) else None


def _digest_regular(path: str) -> str | None:
    """Content digest (as ``filecheck.digest_bytes``) of a regular file, read in chunks; None for
    anything else (a FIFO or a device is never opened) or when it cannot be read."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        hasher = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                hasher.update(chunk)
    except OSError:
        return None
    return hasher.hexdigest()


def content_digest(root: str, relative: str) -> str | None:
    """Digest of a regular file inside the repository; None for anything else."""
    real = _real_inside(root, relative)
    return _digest_regular(real) if real is not None else None


def fingerprint(root: str, relative: str) -> str:
    """What a rule could see of one file: where it really is, what kind of file, its content.
    Differs whenever a rule reading the file could give another answer. A FIFO or a device is
    never opened, nor a file outside the repository (only where it is matters there)."""
    full = os.path.join(root, relative)
    try:
        status = os.stat(full)
    except FileNotFoundError:
        return "missing"
    except OSError as bad:
        return f"unreadable:{bad.errno}"
    real = _real_inside(root, relative)
    if real is None:
        return f"outside\0{os.path.realpath(full)}"
    if not stat.S_ISREG(status.st_mode):
        return f"special:{stat.S_IFMT(status.st_mode)}\0{real}"
    digest = _digest_regular(real)
    return f"{real}\0{digest}" if digest is not None else "unreadable"


def inputs_of(path: str, kind: str, data: Any) -> list[str]:
    """Repository-relative paths of the files besides itself that results about one resource file
    depend on, found from its data: an audience's CSV file (however the rules check it)."""
    if kind != "audience" or not isinstance(data, dict):
        return []
    source = data.get("source")
    reference = source.get("csv") if isinstance(source, dict) else None
    if not isinstance(reference, str) or not reference or os.path.isabs(reference):
        return []  # nothing is read: an absolute path is refused as it is
    # not normalised: ".." after a linked folder is resolved the way the rules resolve it
    return [posixpath.join(posixpath.dirname(path), reference)]


class Fingerprints:
    """Fingerprints of input files, each taken once per run."""

    def __init__(self, root: Path | str) -> None:
        self.root = str(root)
        self.seen: dict[str, str] = {}

    def __call__(self, relative: str) -> str:
        found = self.seen.get(relative)
        if found is None:
            found = self.seen[relative] = fingerprint(self.root, relative)
        return found

    def of(self, paths: Iterable[str]) -> dict[str, str]:
        return {path: self(path) for path in paths}

    def unchanged(self, recorded: Any) -> bool:
        """True when every recorded ``path -> fingerprint`` still holds."""
        if not isinstance(recorded, dict):
            return False
        return all(self(path) == value for path, value in recorded.items())


class ValidationCache:
    """``path -> (kind, result, inputs)``; ``get`` only answers for the exact same bytes and inputs."""

    def __init__(self, root: Path, entries: dict | None = None, key: str | None = None) -> None:
        self.root = root
        self.key = key or _engine_key()
        self.entries: dict = entries or {}
        self.loaded = entries is not None
        self.dirty = False

    @classmethod
    def load(cls, root: Path) -> ValidationCache:
        key = _engine_key()
        entries = localcache.load(root, CACHE_FILE, key)
        return cls(root, entries if isinstance(entries, dict) else None, key)

    @classmethod
    def empty(cls, root: Path) -> ValidationCache:
        """A cache that reads nothing and, once saved, replaces what was stored (``--no-cache``)."""
        return cls(root, None)

    def get(self, path: str, kind: str, digest: str, fingerprints: Fingerprints):
        hit = self.entries.get(path)
        if not isinstance(hit, tuple) or len(hit) != 3:
            return None
        stored_kind, result, inputs = hit
        if stored_kind != kind or not isinstance(result, tuple) or not result or result[0] != digest:
            return None
        return result if fingerprints.unchanged(inputs) else None

    def put(self, path: str, kind: str, result, inputs: dict[str, str]) -> None:
        self.entries[path] = (kind, result, inputs)
        self.dirty = True

    def retain(self, paths: set[str]) -> None:
        """Forget files that no longer exist."""
        stale = set(self.entries) - paths
        for path in stale:
            del self.entries[path]
        self.dirty = self.dirty or bool(stale)

    def save(self) -> None:
        if self.dirty or not self.loaded:
            localcache.dump(self.root, CACHE_FILE, self.key, self.entries)
            self.dirty = False


def files_key(digests: list[tuple[str, str]]) -> str:
    """One digest over every (path, content digest) of the repository."""
    hasher = hashlib.blake2b(digest_size=16)
    for path, digest in sorted(digests):
        hasher.update(f"{path}\0{digest}\n".encode())
    return hasher.hexdigest()


def context_key(files: str, *context: Any) -> str:
    """One digest of the files and of everything else a complete result depends on (plain data:
    discovery problems, the user directory's attributes, ...)."""
    hasher = hashlib.blake2b(_engine_key().encode(), digest_size=16)
    hasher.update(files.encode())
    hasher.update(marshal.dumps(context))
    return hasher.hexdigest()


class ResultCache:
    """The last complete result: problems and attachment digests for one exact set of inputs.

    Lets an unchanged repository answer without loading any file's data or running a rule; the
    other files the rules read (audience CSVs) are fingerprinted again to make sure they did not
    change.
    """

    def __init__(self, root: Path, key: str | None = None) -> None:
        self.root = root
        self.key = key or _engine_key()

    def lookup(self, key: str, fingerprints: Fingerprints) -> tuple[list, dict] | None:
        stored = localcache.load(self.root, RESULT_FILE, self.key)
        if not isinstance(stored, tuple) or len(stored) != 4:
            return None
        stored_key, inputs, attachments, problems = stored
        if stored_key != key or not fingerprints.unchanged(inputs):
            return None
        return problems, attachments

    def store(self, key: str, inputs: dict[str, str], attachments: dict, problems: list) -> None:
        localcache.dump(self.root, RESULT_FILE, self.key, (key, inputs, attachments, problems))
