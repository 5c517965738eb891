"""Files under ``.campaigns/cache/``: keyed by the engine code that wrote them, written atomically.

Validation and planning remember results between runs. Each cache file holds ``(key, value)``,
where the key is a digest of the engine's version and of the source files whose logic produced
the value, so new code never reads an old result. Values are plain data stored with ``marshal``
(several times faster to load than JSON or pickle). A read-only checkout simply goes without.
"""

from __future__ import annotations

import hashlib
import marshal
import os
from functools import cache
from pathlib import Path
from typing import Any

from engine import __version__

CACHE_DIR = Path(".campaigns") / "cache"
_PACKAGE = Path(__file__).resolve().parent


@cache
def code_key(*parts: str) -> str:
    """Digest of the engine's version and the named parts of the package (folders or files)."""
    hasher = hashlib.blake2b(__version__.encode(), digest_size=16)
    for part in parts:
        target = _PACKAGE / part
        files = sorted(target.glob("*.py")) if target.is_dir() else [target]
        for path in files:
            try:
                hasher.update(path.name.encode() + path.read_bytes())
            except OSError:
                continue
    return hasher.hexdigest()


def load(path: Path, key: str) -> Any | None:
    """The value stored at ``path`` under ``key``; None when missing, unreadable or stale."""
    try:
        with open(path, "rb") as handle:
            stored_key, value = marshal.load(handle)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    return value if stored_key == key else None


def dump(path: Path, key: str, value: Any) -> None:
    """Store ``value`` under ``key`` at ``path``: atomically, and git-ignored."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        ignore = path.parent.parent / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# campaigns' local state and caches\n*\n")
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with open(temporary, "wb") as handle:
            marshal.dump((key, value), handle)
        os.replace(temporary, path)
    except OSError:
        return
