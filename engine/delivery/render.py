"""Creatives rendered per user: title, content and redirection through the shared sandboxed
Jinja environment (``engine.templating``) with StrictUndefined, so a missing variable is an
error for that user (``RenderError``), never a message with a blank hole.

Each text is compiled once per creative; plain text (no ``{{``) is not rendered at all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_MISSING = re.compile(r"'dict object' has no attribute '([^']*)'")


class RenderError(Exception):
    """A creative cannot be rendered for a user (a missing variable, a sandbox violation)."""


def _compile(text: Any) -> tuple[Any, Any]:
    """A text field as ``(render, constant)``: ``render(user=...)`` of the sandboxed template
    (compiled once; StrictUndefined makes a missing variable an error), or None and the text
    itself when it is plain text."""
    from engine.templating import compiled, is_template

    if text is None or not isinstance(text, str) or not is_template(text):
        return None, text
    return compiled(text).render, None


class CreativeText:
    """A creative ready to render: title, content and redirection (one URL or a list)."""

    def __init__(self, creative_id: str, body: Mapping[str, Any]) -> None:
        self.id = creative_id
        self._title, self._title_text = _compile(body.get("title"))
        self._content, self._content_text = _compile(body.get("content"))
        redirection = body.get("redirection")
        self._redirections = [_compile(item) for item in redirection] if isinstance(redirection, list) else None
        self._redirection, self._redirection_text = _compile(redirection if self._redirections is None else None)

    def render(self, user: dict) -> tuple[Any, Any, Any]:
        """(title, content, redirection) for ``user``; raises RenderError naming the field."""
        field_name = "title"
        try:
            title = self._title_text if self._title is None else self._title(user=user)
            field_name = "content"
            content = self._content_text if self._content is None else self._content(user=user)
            field_name = "redirection"
            if self._redirections is not None:
                redirection: Any = [text if render is None else render(user=user) for render, text in self._redirections]
            else:
                redirection = self._redirection_text if self._redirection is None else self._redirection(user=user)
        except Exception as problem:  # noqa: BLE001 - UndefinedError, SecurityError, filter errors
            detail = getattr(problem, "message", None) or str(problem) or type(problem).__name__
            missing = _MISSING.fullmatch(detail)
            if missing:
                detail = f"the user has no {missing.group(1)!r} attribute (missing variable)"
            raise RenderError(f"creative {self.id}: cannot render the {field_name}: {detail}") from None
        return title, content, redirection
