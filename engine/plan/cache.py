"""Digests the plan computed before, keyed by what they were computed from.

A desired body is a pure function of its file's bytes (plus, for audiences, the bytes of their
CSV file), and a task's content digest a pure function of the bodies it covers. Remembering them
by ``engine.localcache`` (outside the work tree, authenticated) means a plan over an unchanged
20,000-file repository serialises and hashes nothing; a changed file is computed again because
its bytes, hence its digest, differ. The cache is dropped whenever the engine's code changes.
``apply`` reads none of it (``read=False``) and stores what it computed.

Body digests (``plan.marshal``, read by every plan) are keyed by their source key (the file's
content digest, plus what else the body depends on), the cheapest shape to load and look up;
content digests (``plan-contents.marshal``) are only read when a task's content digest is needed.
"""

from __future__ import annotations

from pathlib import Path

from engine import localcache

CACHE_FILE = "plan.marshal"
CONTENTS_FILE = "plan-contents.marshal"


def _engine_key() -> str:
    """Digest of the code that computes the cached digests."""
    return localcache.code_key()


def _load(root: Path, name: str, key: str) -> dict | None:
    entries = localcache.load(root, name, key)
    return entries if isinstance(entries, dict) else None


class DigestCache:
    """``bodies``: source key -> body digest; ``contents``: component key -> content digest."""

    def __init__(self, root: Path | None, key: str, bodies: dict | None = None, *, read: bool = True) -> None:
        self.root = Path(root) if root is not None else None
        self.key = key
        self.bodies: dict[str, str] = bodies or {}
        self._contents: dict[str, str] | None = None if root is not None and read else {}
        self.dirty = False
        self.new = 0  # digests computed this run
        self.loaded = bool(bodies)
        self.contents_dirty = False
        self.used: set[str] | None = None  # source keys of this repository (set by Desired.digests)

    @classmethod
    def load(cls, root: Path | None, *, read: bool = True) -> DigestCache:
        """The cache of the repository at ``root`` (an empty, unsaved one when ``root`` is None).

        ``read=False``: start empty (read nothing) and store what this run computes."""
        key = _engine_key()
        if root is None:
            return cls(None, key)
        return cls(root, key, _load(Path(root), CACHE_FILE, key) if read else None, read=read)

    def body_digest(self, source_key: str) -> str | None:
        return self.bodies.get(source_key)

    def put_body_digest(self, source_key: str, digest: str) -> None:
        self.bodies[source_key] = digest
        self.dirty = True
        self.new += 1

    @property
    def contents(self) -> dict[str, str]:
        if self._contents is None:
            self._contents = _load(self.root, CONTENTS_FILE, self.key) or {}
        return self._contents

    def content_digest(self, component_key: str) -> str | None:
        return self.contents.get(component_key)

    def put_content_digest(self, component_key: str, digest: str) -> None:
        self.contents[component_key] = digest
        self.contents_dirty = True

    def save(self) -> None:
        """Write what changed, forgetting sources no longer in the repository."""
        if self.root is None:
            return
        pruned = False
        if self.used is not None and len(self.bodies) > 1.5 * len(self.used) + 100:
            self.bodies = {key: self.bodies[key] for key in self.used if key in self.bodies}
            pruned = True
        # A handful of new digests is cheaper to compute again than to rewrite 20,000 entries for.
        if pruned or (self.dirty and (self.new >= 32 or not self.loaded or self.new * 50 >= len(self.bodies))):
            localcache.dump(self.root, CACHE_FILE, self.key, self.bodies)
            self.dirty = False
        if self.contents_dirty and self._contents is not None:
            if len(self._contents) > 4 * max(len(self.bodies), 1000):  # keep old content digests bounded
                self._contents = {}
            localcache.dump(self.root, CONTENTS_FILE, self.key, self._contents)
            self.contents_dirty = False
