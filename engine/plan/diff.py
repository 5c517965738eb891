"""Field-level differences between a stored body and a desired one (deepdiff for lists).

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
    """Field-level differences between two bodies.

    Mappings are walked here, so equal subtrees cost one comparison and deepdiff (4 ms a call)
    only sees a differing list; a plan of 10,000 changed tasks spent most of its time in it.
    The result is the one ``DeepDiff(old, new, threshold_to_diff_deeper=0)`` gives (a test holds
    the two equal): every changed key is its own line, however many of a mapping's keys changed.
    """
    if new is None:
        return []
    found: list[FieldDiff] = []
    _walk(old, new, [], found)
    found.sort(key=lambda d: d.path)
    return found


def _same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down, as deepdiff compares (1 != 1.0 != True)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def _walk(old: Any, new: Any, steps: list[Any], found: list[FieldDiff]) -> None:
    if _same(old, new):
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in old:
            if key not in new:
                found.append(FieldDiff(format_path([*steps, key]), "removed", old[key], None))
            else:
                _walk(old[key], new[key], [*steps, key], found)
        for key in new:
            if key not in old:
                found.append(FieldDiff(format_path([*steps, key]), "added", None, new[key]))
        return
    if isinstance(old, list) and isinstance(new, list):
        found.extend(_deepdiff(old, new, steps))
        return
    found.append(FieldDiff(format_path(steps), "changed", old, new))


def _deepdiff(old: Any, new: Any, prefix: list[Any]) -> list[FieldDiff]:
    """deepdiff's own reading of two differing values (lists: what moved, what was added)."""
    from deepdiff import DeepDiff  # 64 ms to import: only for lists that differ (a forked reader imports it early)
    from deepdiff.helper import NotPresent

    found: list[FieldDiff] = []
    tree = DeepDiff(old, new, view="tree", ignore_order=False, threshold_to_diff_deeper=0)
    for levels in tree.values():
        for level in levels:
            path = format_path([*prefix, *level.path(output_format="list")])
            if isinstance(level.t1, NotPresent):
                found.append(FieldDiff(path, "added", None, level.t2))
            elif isinstance(level.t2, NotPresent):
                found.append(FieldDiff(path, "removed", level.t1, None))
            else:
                found.append(FieldDiff(path, "changed", level.t1, level.t2))
    return found
