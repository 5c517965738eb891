"""Plain-text tables that fit a terminal: columns are dropped by priority, then the wrappable
ones wrapped, so that no line is wider than asked (``campaigns status`` at 80 columns).

No colour and no box drawing, so the output pipes cleanly and reads the same in a log.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

GAP = 2
MIN_WRAP = 10
COMFORTABLE = 20
"""A wrappable column this wide (or its natural width) still reads well; narrower ones first cost a dropped column."""
_WORDS = re.compile(r"\s+|(?<=-)")
"""Where a cell may wrap: at spaces and after hyphens (``black-friday-`` / ``sale``), as textwrap does."""


@dataclass(frozen=True)
class ColumnSpec:
    """A column: its header; ``drop`` (1 goes first; None: never dropped); ``wrap``: its cells
    may span several lines when the table is still too wide."""

    header: str
    drop: int | None = None
    wrap: bool = False


@dataclass(frozen=True)
class Fitted:
    text: str
    dropped: tuple[str, ...]  # headers of the columns left out, in the order they were dropped


def fit(columns: Sequence[ColumnSpec], rows: Sequence[Sequence[str]], width: int | None) -> Fitted:
    """The table laid out within ``width`` columns (``None``: every column, unwrapped)."""
    keep = list(range(len(columns)))
    widths = [max([len(columns[i].header), *(len(str(row[i])) for row in rows)]) for i in keep]
    dropped: list[str] = []

    def total(sizes: Sequence[int]) -> int:
        return sum(sizes[i] for i in keep) + GAP * (len(keep) - 1)

    if width is not None:
        narrowest = [_narrowest(spec, [str(row[i]) for row in rows], widths[i]) for i, spec in enumerate(columns)]
        comfortable = [min(widths[i], max(narrowest[i], COMFORTABLE)) for i in range(len(columns))]
        order = sorted((spec.drop, index) for index, spec in enumerate(columns) if spec.drop is not None)
        for _priority, index in order:  # drop columns while the rest cannot fit with easy wrapping
            if total(comfortable) <= width:
                break
            keep.remove(index)
            dropped.append(columns[index].header)
        # narrow the widest wrappable column a character at a time: first without cutting a
        # word, then cutting long ones
        floors = [narrowest, [max(len(spec.header), MIN_WRAP) if spec.wrap else widths[i] for i, spec in enumerate(columns)]]
        for floor in floors:
            while total(widths) > width:
                wrappable = [i for i in keep if widths[i] > floor[i]]
                if not wrappable:
                    break
                widths[max(wrappable, key=lambda i: widths[i])] -= 1
    lines: list[str] = []
    for row in [[spec.header for spec in columns], *rows]:
        cells = [_cell(str(row[i]), widths[i]) for i in keep]
        for depth in range(max(len(cell) for cell in cells)):
            parts = [(cell[depth] if depth < len(cell) else "").ljust(widths[i]) for cell, i in zip(cells, keep)]
            lines.append((" " * GAP).join(parts).rstrip())
    return Fitted("\n".join(lines) + "\n", tuple(dropped))


def _narrowest(spec: ColumnSpec, cells: list[str], natural: int) -> int:
    """How narrow a column can go: its natural width unless it wraps; then its header, its
    longest word and MIN_WRAP (a shorter column would cut words)."""
    if not spec.wrap:
        return natural
    longest = max((len(word) for cell in cells for word in _WORDS.split(cell)), default=0)
    return min(natural, max(len(spec.header), MIN_WRAP, longest))


def _cell(text: str, width: int) -> list[str]:
    """A cell's lines: wrapped at spaces, after ``, `` if it can, a long word cut."""
    if len(text) <= width:
        return [text]
    return textwrap.wrap(text, width, break_on_hyphens=True, break_long_words=True) or [""]


def wrap_line(text: str, width: int | None, indent: str = "  ") -> str:
    """A free-text line wrapped to ``width`` (continuation lines indented), or as it is."""
    if width is None or len(text) <= width:
        return text
    return "\n".join(textwrap.wrap(text, width, subsequent_indent=indent, break_long_words=True, break_on_hyphens=False))
