"""Local caches: outside the work tree, authenticated, and keyed by the engine that wrote them.

Validation and planning remember results between runs. A pull request controls every file of
its checkout, so no cache is ever read from the repository:

- **where**: one folder per repository (a digest of its resolved path) under the user's cache
  directory (``platformdirs.user_cache_dir("campaigns")``, or ``$CAMPAIGNS_CACHE_DIR``);
- **authenticated**: every file carries a keyed BLAKE2b MAC over its bytes, its repository and
  its name, made with a random per-user key that never leaves the machine. The key lives outside
  the cache directory (``platformdirs.user_data_dir("campaigns")/cache.key``, or
  ``$CAMPAIGNS_CACHE_KEY``), created on first use with mode 0600, because CI cache actions can
  restore a cache directory from another (an attacker's) run. A file whose MAC does not verify
  is a miss: its bytes are never given to ``marshal``;
- **never a tracked file**: if the cache folder lies inside the repository, files there that
  git tracks are ignored, with a warning; so are committed files under the old location
  ``.campaigns/cache/`` (:func:`warn_committed`);
- **keyed by the engine**: :func:`code_key` digests the Python version, the installed libraries,
  the engine's version and every source file of the package, so new code never reads an old
  result.

Values are plain data stored with ``marshal`` (several times faster to load than JSON or
pickle). A machine where nothing can be written simply goes without.
"""

from __future__ import annotations

import hashlib
import hmac
import marshal
import os
import secrets
import sys
from functools import cache
from pathlib import Path
from typing import Any

import platformdirs

import engine

CACHE_DIR_ENV = "CAMPAIGNS_CACHE_DIR"
KEY_FILE_ENV = "CAMPAIGNS_CACHE_KEY"
LEGACY_DIR = Path(".campaigns") / "cache"  # where caches lived before: never read, committed files warned about
_PACKAGE = Path(engine.__file__).resolve().parent
_MAGIC = b"campaigns-cache/2\n"
_MAC_SIZE = 32
_KEY_SIZE = 32


# -- where --------------------------------------------------------------------------------------


def cache_home() -> Path:
    """The folder that holds every repository's caches."""
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured:
        return Path(configured).expanduser().absolute()
    return Path(platformdirs.user_cache_dir("campaigns"))


def key_file() -> Path:
    """The per-user MAC key: outside the cache directory, so restoring a cache cannot bring one."""
    configured = os.environ.get(KEY_FILE_ENV)
    if configured:
        return Path(configured).expanduser().absolute()
    return Path(platformdirs.user_data_dir("campaigns")) / "cache.key"


def folder(root: Path | str) -> Path:
    """The cache folder of the repository at ``root`` (one per resolved path)."""
    resolved = str(Path(root).resolve())
    return cache_home() / "repos" / hashlib.blake2b(resolved.encode(), digest_size=16).hexdigest()


# -- the key ------------------------------------------------------------------------------------


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _private(path: Path) -> bool:
    """Owned by this user and neither readable nor writable by anyone else."""
    status = path.stat()
    owner_ok = not hasattr(os, "geteuid") or status.st_uid == os.geteuid()
    return owner_ok and not status.st_mode & 0o077


@cache
def _secret_at(path: Path) -> bytes | None:
    try:
        if not path.exists():
            _create_key(path)
        if not _private(path):
            _warn(f"caches are off: the cache key {path} is not private to this user (delete it to get a new one)")
            return None
        secret = path.read_bytes()
    except OSError:
        return None  # no key, no cache: everything is simply computed
    if len(secret) != _KEY_SIZE:
        _warn(f"caches are off: {path} is not a cache key (delete it to get a new one)")
        return None
    return secret


def _create_key(path: Path) -> None:
    """A fresh random key, mode 0600, published atomically (a concurrent first run keeps the winner's)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(secrets.token_bytes(_KEY_SIZE))
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
    finally:
        temporary.unlink(missing_ok=True)


def secret() -> bytes | None:
    """This user's cache key (created on first use); None when there is none to be had."""
    return _secret_at(key_file())


def _mac(key: bytes, scope: bytes, payload: bytes) -> bytes:
    hasher = hashlib.blake2b(key=key, digest_size=_MAC_SIZE)
    hasher.update(scope)
    hasher.update(payload)
    return hasher.digest()


def _scope(root: Path, name: str) -> bytes:
    """What a file's MAC binds it to: its repository and its name (no swapping one for another)."""
    return f"{Path(root).resolve()}\0{name}\0".encode()


# -- keyed by the engine ------------------------------------------------------------------------


def _installed_distributions() -> list[str]:
    """Names (with versions) of the installed distributions: a library upgrade -- PyYAML,
    jsonschema, pydantic, Jinja2 -- can change a result too. One directory listing per site
    folder (importlib.metadata alone would cost 70 ms to import)."""
    found: list[str] = []
    for entry in sys.path:
        if not entry.endswith(("site-packages", "dist-packages")):
            continue
        try:
            found.extend(name for name in os.listdir(entry) if name.endswith((".dist-info", ".egg-info")))
        except OSError:
            continue
    return sorted(found)


@cache
def code_key() -> str:
    """Digest of the Python version, the installed libraries, the engine's version and every
    source file of the engine."""
    hasher = hashlib.blake2b(digest_size=16)
    hasher.update(f"{sys.version}\0{sys.implementation.cache_tag}\0{engine.__version__}\0".encode())
    hasher.update("\0".join(_installed_distributions()).encode())
    for path in sorted(_PACKAGE.rglob("*.py")):
        try:
            hasher.update(str(path.relative_to(_PACKAGE)).encode() + b"\0" + path.read_bytes())
        except OSError:
            continue
    return hasher.hexdigest()


# -- never a tracked file -----------------------------------------------------------------------


def tracked(root: Path, directory: Path) -> list[str]:
    """Files under ``directory`` that git tracks (paths relative to ``root``); empty, at no cost,
    when the folder is missing or empty, and when ``root`` is not in a git work tree."""
    try:
        if not any(os.scandir(directory)):
            return []
    except OSError:
        return []
    import subprocess  # about 7 ms to import; needed only when such a folder has files

    try:
        listed = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--", str(directory)],
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    if listed.returncode != 0:
        return []
    return sorted(name for name in listed.stdout.decode(errors="replace").split("\0") if name)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def warn_committed(root: Path | str) -> list[str]:
    """Warn on stderr about every committed cache file of the repository (never read); returns them.

    Looks at the old location ``.campaigns/cache/`` and at the cache folder when
    ``$CAMPAIGNS_CACHE_DIR`` puts it inside the repository; git is asked only when such a
    folder has files."""
    root = Path(root)
    committed = tracked(root, root / LEGACY_DIR)
    own = folder(root)
    if _inside(own, root):
        committed += [name for name in tracked(root, own) if name not in committed]
    for name in committed:
        _warn(f"ignoring {name}: it is committed to git, and campaigns never trusts a cache from the repository "
              f"(remove it with `git rm --cached {name}`)")
    return committed


def _tracked_in_work_tree(root: Path, path: Path) -> bool:
    """True when ``path`` (a cache file) lies inside the repository and git tracks it."""
    if not _inside(path, root):
        return False
    return any((root / name).resolve() == path.resolve() for name in tracked(root, path.parent))


# -- load and dump ------------------------------------------------------------------------------


def load(root: Path | str, name: str, key: str) -> Any | None:
    """The value stored as ``name`` for the repository at ``root`` under ``key``; None when it is
    missing, unreadable, not authentic, tracked by git, or was stored under another key."""
    path = folder(root) / name
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    mac_key = secret()
    header = len(_MAGIC) + _MAC_SIZE
    if mac_key is None or len(raw) < header or not raw.startswith(_MAGIC):
        return None
    tag, payload = raw[len(_MAGIC) : header], raw[header:]
    if not hmac.compare_digest(tag, _mac(mac_key, _scope(Path(root), name), payload)):
        return None  # forged, corrupt, or from another user or repository: never unmarshalled
    if _tracked_in_work_tree(Path(root), path):
        return None  # committed to git: never read (warn_committed has named it)
    try:
        stored_key, value = marshal.loads(payload)
    except (EOFError, ValueError, TypeError):
        return None
    return value if stored_key == key else None


def dump(root: Path | str, name: str, key: str, value: Any) -> bool:
    """Store ``value`` under ``key`` as ``name`` for the repository at ``root``, atomically;
    False when it could not be written (no key, read-only disk)."""
    mac_key = secret()
    if mac_key is None:
        return False
    target = folder(root)
    path = target / name
    try:
        payload = marshal.dumps((key, value))
    except ValueError:
        return False
    try:
        target.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = path.with_name(f".{name}.{os.getpid()}.tmp")
        with open(temporary, "wb") as handle:
            handle.write(_MAGIC + _mac(mac_key, _scope(Path(root), name), payload) + payload)
        os.replace(temporary, path)
    except OSError:
        return False
    return True


def forget(root: Path | str, *names: str) -> None:
    """Drop the named cache files of a repository."""
    for name in names:
        try:
            (folder(root) / name).unlink()
        except OSError:
            pass
