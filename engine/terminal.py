"""What the terminal gets: one decision, for every command, on colour and on width.

Colour follows https://no-color.org: ``NO_COLOR`` set to anything but the empty string turns
every colour and style off; a command-line flag (``plan --color``) still wins over it.
``FORCE_COLOR`` (not empty, not ``0``) turns it on where there is no terminal (CI logs that
render ANSI). Otherwise colour goes only to a terminal, and never to ``TERM=dumb``.

Width is the terminal's, or ``COLUMNS`` when set (so ``COLUMNS=80 campaigns status`` lays out
for 80 columns even in a pipe), else 80.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import IO, Any

DEFAULT_WIDTH = 80


def is_terminal(stream: IO[Any] | None) -> bool:
    """Whether ``stream`` is a terminal (a closed or replaced stream is not)."""
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False


def no_color() -> bool:
    """``NO_COLOR`` is set to something (an empty value does not count, as no-color.org says)."""
    return bool(os.environ.get("NO_COLOR"))


def force_color() -> bool:
    return os.environ.get("FORCE_COLOR", "").strip().lower() not in ("", "0", "false", "no")


def use_color(stream: IO[Any] | None = None, flag: bool | None = None) -> bool:
    """Whether to colour what goes to ``stream`` (default stdout); ``flag`` is an explicit
    ``--color``/``--no-color`` and wins over the environment."""
    if flag is not None:
        return flag
    if no_color():
        return False
    if force_color():
        return True
    return is_terminal(sys.stdout if stream is None else stream) and os.environ.get("TERM") != "dumb"


def width(stream: IO[Any] | None = None) -> int:
    """Columns to lay out for: ``COLUMNS`` if set, else the terminal's, else 80."""
    configured = os.environ.get("COLUMNS", "").strip()
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    if is_terminal(sys.stdout if stream is None else stream):
        return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns
    return DEFAULT_WIDTH


def console(stream: IO[Any] | None = None, *, stderr: bool = False, **options: Any) -> Any:
    """A rich Console for ``stream`` (stdout, or stderr with ``stderr=True``) that colours only
    when :func:`use_color` says so: without colour it emits no ANSI style at all (rich's own
    NO_COLOR handling keeps bold and reverse)."""
    from rich.console import Console  # 17 ms: imported by the commands that draw, not by validate

    target = stream if stream is not None else (sys.stderr if stderr else sys.stdout)
    colour = use_color(target)
    return Console(file=target, color_system="auto" if colour else None, no_color=not colour, **options)
