"""Field-level differences between a stored body and a desired one, by deepdiff.

Paths read like the YAML a person edits: ``schedule.windows[0].start``.
"""

from __future__ import annotations

from typing import Any

from engine.plan.model import FieldDiff


def format_path(steps: list[Any]) -> str:
    """``['schedule', 'windows', 0, 'start']`` -> ``schedule.windows[0].start``."""
    out = ""
    for step in steps:
        if isinstance(step, int):
            out += f"[{step}]"
        else:
            out += ("." if out else "") + str(step)
    return out or "(whole)"


def field_diffs(old: dict[str, Any], new: dict[str, Any] | None) -> list[FieldDiff]:
    """Field-level differences between two bodies (deepdiff, imported only when something changed)."""
    from deepdiff import DeepDiff
    from deepdiff.helper import NotPresent

    if new is None:
        return []
    found: list[FieldDiff] = []
    tree = DeepDiff(old, new, view="tree", ignore_order=False)
    for report, levels in tree.items():
        for level in levels:
            path = format_path(level.path(output_format="list"))
            old_value = None if isinstance(level.t1, NotPresent) else level.t1
            new_value = None if isinstance(level.t2, NotPresent) else level.t2
            if isinstance(level.t1, NotPresent):
                found.append(FieldDiff(path, "added", None, new_value))
            elif isinstance(level.t2, NotPresent):
                found.append(FieldDiff(path, "removed", old_value, None))
            else:
                found.append(FieldDiff(path, "changed", old_value, new_value))
    found.sort(key=lambda d: d.path)
    return found
