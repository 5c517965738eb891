"""Where the state lives: one rule for every command that opens it.

``--state URL`` > environment ``CAMPAIGNS_STATE`` > ``platform.yaml`` ``state`` > the default
``sqlite:///.campaigns/state.db``. Relative SQLite paths are resolved against the repository root
(by the state store, given ``base_dir``), so ``campaigns plan --repo other/`` finds ``other/``'s
state, not the current directory's.

``state`` subcommands must work on a repository that does not validate (or on a machine that only
has ``platform.yaml``), so this module reads ``platform.yaml`` alone with the safe loader instead of
loading the whole repository.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.config import yamlload
from engine.config.discovery import unreadable_platform
from engine.config.safefile import open_regular
from engine.errors import UsageError

DEFAULT_STATE_URL = "sqlite:///.campaigns/state.db"
STATE_ENV = "CAMPAIGNS_STATE"
PLATFORM_FILE = "platform.yaml"


def read_platform(repo: Path) -> dict[str, Any] | None:
    """The data of ``platform.yaml`` (None when the file does not exist).

    Raises UsageError when the file exists but cannot be read or parsed.
    """
    path = Path(repo) / PLATFORM_FILE
    if not os.path.lexists(path):
        return None
    refused = unreadable_platform(Path(repo))  # never follows it out of the repository, nor opens a FIFO
    if refused is not None and refused.file == PLATFORM_FILE:
        raise UsageError(f"{refused.file}:1:1: {refused.code}: {refused.message}")
    try:
        descriptor = open_regular(str(path))
        with os.fdopen(descriptor, "rb") as handle:
            raw = handle.read(yamlload.MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return None
    except ValueError as kind:
        raise UsageError(f"{PLATFORM_FILE}:1:1: yaml-syntax: this file is {kind}, not a regular file; it is not read") from None
    except OSError as problem:
        raise UsageError(f"cannot read {path}: {problem.strerror}") from None
    try:
        data = yamlload.load(raw)
    except yamlload.YamlProblem as problem:
        raise UsageError(f"{path}:{problem.line}:{problem.column}: {problem.message}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a mapping of settings")
    return data


def state_url_from_platform(platform: Mapping[str, Any] | None, where: str = PLATFORM_FILE) -> str | None:
    """The ``state`` setting of platform data, if any (UsageError when it is not a URL string)."""
    if not platform or "state" not in platform:
        return None
    value = platform["state"]
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{where}: 'state' must be a database URL such as {DEFAULT_STATE_URL}")
    return value.strip()


def resolve_state_url(
    repo: Path,
    option: str | None = None,
    *,
    env: Mapping[str, str] = os.environ,
    platform: Mapping[str, Any] | None = None,
) -> str:
    """The state URL to use for the repository at ``repo``.

    ``platform`` is the platform data when the caller already has it (a loaded repository);
    otherwise ``platform.yaml`` is read on its own, and only when neither the option nor the
    environment decide.
    """
    if option and option.strip():
        return option.strip()
    from_env = env.get(STATE_ENV, "").strip()
    if from_env:
        return from_env
    if platform is None:
        platform = read_platform(repo)
    return state_url_from_platform(platform, str(Path(repo) / PLATFORM_FILE)) or DEFAULT_STATE_URL
