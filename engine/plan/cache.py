"""Digests the plan computed before, keyed by what they were computed from.

A desired body is a pure function of its file's bytes (plus, for audiences, the bytes of their
CSV file), and a task's content digest a pure function of the bodies it covers. Remembering them
in ``.campaigns/cache/plan.marshal`` means a plan over an unchanged 20,000-file repository
serialises and hashes nothing; a changed file is computed again because its bytes, hence its
digest, differ. The cache is dropped whenever the engine's code changes.
"""

from __future__ import annotations

import hashlib
import marshal
import os
from pathlib import Path

from engine import __version__

CACHE_FILE = Path(".campaigns") / "cache" / "plan.marshal"
_CODE = (
    ("config", None),
    ("validation", None),
    ("plan", "desired.py"),
    ("plan", "cache.py"),
    ("state", "records.py"),
)


def _engine_key() -> str:
    package = Path(__file__).resolve().parent.parent
    hasher = hashlib.blake2b(__version__.encode(), digest_size=16)
    for folder, name in _CODE:
        files = [package / folder / name] if name else sorted((package / folder).glob("*.py"))
        for path in files:
            try:
                hasher.update(path.name.encode() + path.read_bytes())
            except OSError:
                continue
    return hasher.hexdigest()


class DigestCache:
    """``bodies``: path -> (source key, body digest); ``contents``: component key -> content digest."""

    def __init__(self, path: Path | None, key: str, bodies: dict | None = None, contents: dict | None = None):
        self.path = path
        self.key = key
        self.bodies: dict[str, tuple[str, str]] = bodies or {}
        self.contents: dict[str, str] = contents or {}
        self.dirty = False
        self._used: set[str] = set()

    @classmethod
    def load(cls, root: Path | None) -> DigestCache:
        """The cache of the repository at ``root`` (an empty, unsaved one when ``root`` is None)."""
        key = _engine_key()
        if root is None:
            return cls(None, key)
        path = Path(root) / CACHE_FILE
        try:
            with open(path, "rb") as handle:
                stored_key, bodies, contents = marshal.load(handle)
        except (OSError, EOFError, ValueError, TypeError):
            return cls(path, key)
        if stored_key != key or not isinstance(bodies, dict) or not isinstance(contents, dict):
            return cls(path, key)
        return cls(path, key, bodies, contents)

    def body_digest(self, path: str, source_key: str) -> str | None:
        self._used.add(path)
        hit = self.bodies.get(path)
        if hit is not None and hit[0] == source_key:
            return hit[1]
        return None

    def put_body_digest(self, path: str, source_key: str, digest: str) -> None:
        self._used.add(path)
        self.bodies[path] = (source_key, digest)
        self.dirty = True

    def content_digest(self, component_key: str) -> str | None:
        return self.contents.get(component_key)

    def put_content_digest(self, component_key: str, digest: str) -> None:
        self.contents[component_key] = digest
        self.dirty = True

    def save(self) -> None:
        """Write if anything changed, forgetting files not seen this time (best effort: a read-only
        checkout simply goes without)."""
        if self.path is None:
            return
        stale = set(self.bodies) - self._used
        if stale and self._used:
            for path in stale:
                del self.bodies[path]
            self.dirty = True
        if len(self.contents) > 4 * max(len(self.bodies), 1000):  # keep old content digests bounded
            self.contents = {}
            self.dirty = True
        if not self.dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            ignore = self.path.parent.parent / ".gitignore"
            if not ignore.exists():
                ignore.write_text("# campaigns' local state and caches\n*\n")
            temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            with open(temporary, "wb") as handle:
                marshal.dump((self.key, self.bodies, self.contents), handle)
            os.replace(temporary, self.path)
            self.dirty = False
        except OSError:
            return
