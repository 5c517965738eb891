"""Per-file validation results, keyed by each file's content digest.

Kept in ``.campaigns/cache/`` (git-ignored). A file whose bytes changed has a new
digest and is checked again; the whole cache is dropped when the engine's own code
changes. Stored with ``marshal``: the results are plain data, and it loads several
times faster than JSON or pickle.
"""

from __future__ import annotations

import hashlib
import marshal
import os
from pathlib import Path

from engine import __version__

CACHE_DIR = Path(".campaigns") / "cache"
CACHE_FILE = "validate.marshal"
_CODE_PARTS = ("config", "validation", "templating.py", "schedule")


def _engine_key() -> str:
    """Digest of the code that produces cached results: new code, new cache."""
    package = Path(__file__).resolve().parent.parent
    hasher = hashlib.blake2b(__version__.encode(), digest_size=16)
    for part in _CODE_PARTS:
        target = package / part
        files = sorted(target.glob("*.py")) if target.is_dir() else [target]
        for path in files:
            try:
                hasher.update(path.name.encode() + path.read_bytes())
            except OSError:
                continue
    return hasher.hexdigest()


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
        try:
            with open(root / CACHE_DIR / CACHE_FILE, "rb") as handle:
                stored_key, entries = marshal.load(handle)
        except (OSError, EOFError, ValueError, TypeError):
            return cls(root, key=key)
        if stored_key != key or not isinstance(entries, dict):
            return cls(root, key=key)
        return cls(root, entries, key)

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
        """Write atomically; a read-only checkout simply goes without a cache."""
        if not self.dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            with open(temporary, "wb") as handle:
                marshal.dump((self.key, self.entries), handle)
            os.replace(temporary, self.path)
        except OSError:
            return
        self.dirty = False
