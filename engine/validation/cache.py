"""Per-file validation results, keyed by each file's content digest.

Kept in ``.campaigns/cache/`` (git-ignored, see ``engine.localcache``). A file whose bytes
changed has a new digest and is checked again; the whole cache is dropped when the engine's own
code changes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from engine import localcache
from engine.localcache import CACHE_DIR

CACHE_FILE = "validate.marshal"
RESULT_FILE = "validate-result.marshal"
_CODE_PARTS = ("config", "validation", "templating.py", "schedule")


def _engine_key() -> str:
    """Digest of the code that produces cached results: new code, new cache."""
    return localcache.code_key(*_CODE_PARTS)


class ValidationCache:
    """``path -> (digest, result)``; ``get`` only answers for the exact same bytes."""

    def __init__(self, root: Path, entries: dict | None = None, key: str | None = None) -> None:
        self.path = root / CACHE_DIR / CACHE_FILE
        self.key = key or _engine_key()
        self.entries: dict = entries or {}
        self.dirty = False

    @classmethod
    def load(cls, root: Path) -> "ValidationCache":
        key = _engine_key()
        entries = localcache.load(root / CACHE_DIR / CACHE_FILE, key)
        return cls(root, entries if isinstance(entries, dict) else None, key)

    def get(self, path: str, digest: str):
        hit = self.entries.get(path)
        if hit is not None and hit[0] == digest:
            return hit
        return None

    def put(self, path: str, result) -> None:
        self.entries[path] = result
        self.dirty = True

    def retain(self, paths: set[str]) -> None:
        """Forget files that no longer exist."""
        stale = set(self.entries) - paths
        for path in stale:
            del self.entries[path]
        self.dirty = self.dirty or bool(stale)

    def save(self) -> None:
        if self.dirty:
            localcache.dump(self.path, self.key, self.entries)
            self.dirty = False


def files_key(digests: list[tuple[str, str]]) -> str:
    """One digest over every (path, content digest) of the repository."""
    hasher = hashlib.blake2b(digest_size=16)
    for path, digest in sorted(digests):
        hasher.update(f"{path}\0{digest}\n".encode())
    return hasher.hexdigest()


class ResultCache:
    """The last complete result: problems and attachment digests for one exact set of files.

    Lets an unchanged repository answer without loading any file's data or running a rule;
    the files referenced by audiences (CSV) are re-hashed to make sure they did not change.
    """

    def __init__(self, root: Path, key: str | None = None) -> None:
        self.root = root
        self.path = root / CACHE_DIR / RESULT_FILE
        self.key = key or _engine_key()

    def lookup(self, files: str, context: str) -> tuple[list, dict] | None:
        stored = localcache.load(self.path, self.key)
        if not isinstance(stored, tuple) or len(stored) != 4:
            return None
        stored_files, stored_context, attachments, problems = stored
        if (stored_files, stored_context) != (files, context):
            return None
        from engine.validation.filecheck import digest_file

        for audience_attachments in attachments.values():
            for path, digest in audience_attachments.items():
                if digest_file(self.root / path) != digest:
                    return None
        return problems, attachments

    def store(self, files: str, context: str, attachments: dict, problems: list) -> None:
        localcache.dump(self.path, self.key, (files, context, attachments, problems))
