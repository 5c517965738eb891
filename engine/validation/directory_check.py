"""The ``unknown-attribute`` rule: audience rules must name attributes the user directory has.

Checked only when a directory exists (``campaigns users import`` ran against the state, or
``platform.yaml`` names a ``user_directory``). A missing SQLite state is noticed without opening
a database, so validating a repository that has none costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.config.settings import resolve_state_url
from engine.delivery.audience_rules import audience_attribute_problems
from engine.errors import CampaignsError
from engine.problems import WARNING
from engine.validation.rules import Finding


def _sqlite_file(url: str, root: Path) -> Path | None:
    if not url.startswith("sqlite"):
        return None
    _, _, rest = url.partition(":///")
    rest = rest.split("?", 1)[0]
    return Path(rest) if rest.startswith("/") else root / rest


def directory_attributes(root: Path, platform: dict[str, Any] | None, state_option: str | None) -> tuple[frozenset[str] | None, str | None]:
    """``(attribute names, None)``; ``(None, None)`` without a directory; ``(None, why)`` when it cannot be read."""
    try:
        url = (platform or {}).get("user_directory") or resolve_state_url(root, state_option, platform=platform or {})
    except CampaignsError as problem:
        return None, str(problem)
    if not isinstance(url, str):
        return None, None
    sqlite_file = _sqlite_file(url, root)
    if sqlite_file is not None and not sqlite_file.is_file():
        return None, None
    # SQLAlchemy (with the directory and the state) only when there is a directory to read
    from engine.delivery.directory import known_attributes
    from engine.state import StateStore
    from engine.state.errors import StateNotFound

    try:
        with StateStore.open(url, root, create=False) as store:
            known = known_attributes(store)
    except StateNotFound:
        return None, None
    except CampaignsError as problem:
        return None, f"audience attributes were not checked: {problem}"
    return (frozenset(known) if known is not None else None), None


def attribute_findings(catalog, known: frozenset[str]) -> Iterator:
    for entry in catalog.valid("audience"):
        for path, message in audience_attribute_problems(entry.data, set(known)):
            yield Finding(entry.source.path, path, "unknown-attribute", message)


def unreadable_directory_finding(platform_path: str, why: str):
    return Finding(platform_path, (), "unknown-attribute", why, WARNING)
