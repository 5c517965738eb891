"""Build campaigns repositories for tests: the shipped example, copied, then changed."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

EXAMPLE_LIVE_NOW = "2026-12-01T00:00:00Z"  # before the example's tasks end: validate gives no dates-past warnings
PROJECT = Path(__file__).resolve().parents[2]
EXAMPLE_PARTS = ("platform.yaml", "templates", "audiences", "creatives", "campaigns", "schemas")


def example_repo(target: Path) -> Path:
    """A copy of the shipped example repository at ``target`` (created)."""
    target.mkdir(parents=True, exist_ok=True)
    for part in EXAMPLE_PARTS:
        source = PROJECT / part
        if source.is_dir():
            shutil.copytree(source, target / part)
        else:
            shutil.copy2(source, target / part)
    return target


def write(root: Path, path: str, text: str) -> Path:
    """Write a file (creating folders); returns its path."""
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


def edit(root: Path, path: str, change: Callable[[dict[str, Any]], None]) -> None:
    """Load a YAML file, let ``change`` mutate the data, write it back (comments are lost)."""
    from engine.config.yamlload import load

    target = root / path
    data = load(target.read_bytes())
    change(data)
    target.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def task_yaml(
    *,
    name: str = "Test task",
    channel: str = "push",
    windows: str = '[{start: "09:00", finish: "11:30"}]',
    recurrence: str = "{type: daily, every: 1}",
    start: str = "2026-12-01",
    finish: str = "2026-12-31",
    audiences: str = "[new-users-ph]",
    creatives: str = "[flash-a]",
    extra: str = "",
) -> str:
    """A task file for the example's site ``ph`` (each part replaceable)."""
    return (
        f"name: {name}\nsite: ph\nmini_program: shop\nchannel: {channel}\n"
        f"schedule:\n  start_date: {start}\n  finish_date: {finish}\n  windows: {windows}\n"
        f"  recurrence: {recurrence}\n{extra}"
        f"audiences: {audiences}\ncreatives: {creatives}\n"
    )
