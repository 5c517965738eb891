"""Creatives rendered per user: the one code path that delivery (``engine.delivery.executor``)
and pilot tests (``engine.pilot``) both use, so a pilot test exercises exactly what delivery does.

A creative's title, content and redirection are rendered through the shared sandbox
(``engine.templating``) for one user, who is seen through the template's declared variables
(and ``user_id``) only. The result is checked before anything is sent:

- a missing variable is ``missing-variable`` (StrictUndefined: never a message with a hole);
- a rendered field longer than its template's ``max_length`` (else 4,096 characters), or a
  gateway ``messageContent`` over 4,096 characters, is ``too-long``;
- a render over its time budget is ``render-timeout``;
- a rendered redirection whose scheme, host or port is not that of its static part, or that has
  userinfo, whitespace or control characters, or is over the channel's URL limit (2,048; 1,024
  through the wallet gateway), is ``url-invalid``.

Each is a ``RenderError`` with ``reason`` (the ledger's reason code) and ``detail`` (which
field, which variable, what was wrong). Each text is compiled once per creative; plain text is
checked once, not rendered.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine import templating
from engine.config.models import GatewayProvider
from engine.config.names import REDIRECTION_MAX
from engine.delivery.providers import Message, provider_config
from engine.templating import (
    ALWAYS_AVAILABLE,
    DEFAULT_OUTPUT_LIMIT,
    Budget,
    RenderLimit,
    TemplateRefused,
    UserView,
    analyze,
    compiled,
    is_template,
    static_prefix,
)
from engine.urlcheck import rendered_url_problem, url_origin

if TYPE_CHECKING:
    from engine.config.models import Platform

GATEWAY_REDIRECT_MAX = 1024
"""The wallet gateway's ``redirectUrl`` limit."""
GATEWAY_CONTENT_MAX = 4096
"""Characters of the gateway's ``messageContent`` JSON text."""
TIMEOUTS_BEFORE_SKIPPING = 3
"""Renders of one creative over the time budget in a row, after which the creative is not
rendered again in this pass: its remaining users fail at once (``render-timeout``), so a heavy
template cannot hold a batch, or a SIGTERM, for minutes."""

REASONS = ("missing-variable", "too-long", "render-timeout", "url-invalid", "template-syntax", "render-error")

_MISSING = re.compile(r"has no attribute '([^']*)'|'([^']*)' is undefined")


class RenderError(Exception):
    """A creative cannot be rendered for a user, or its rendering may not be sent.

    ``reason`` is one of ``REASONS`` (what the ledger records), ``detail`` says which field and
    what was wrong; ``str()`` is the whole sentence."""

    def __init__(self, message: str, reason: str, detail: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.detail = detail


class _Text:
    """One text field: compiled once (or plain), with its output limit."""

    __slots__ = ("field", "limit", "template", "constant", "refused", "origin", "url_limit")

    def __init__(self, field: str, text: Any, limit: int, *, url_limit: int | None = None) -> None:
        self.field = field
        self.limit = limit
        self.url_limit = url_limit
        self.template: Any = None
        self.constant: Any = text
        self.refused: str | None = None
        self.origin: tuple[str, str | None, int | None] | None = None
        if isinstance(text, str) and is_template(text):
            self.constant = None
            try:
                self.template = compiled(text)
            except TemplateRefused as problem:
                self.refused = problem.detail
            if url_limit is not None:
                self.origin = url_origin(static_prefix(text))


class CreativeText:
    """A creative ready to render: title, content and redirection (one URL or a list).

    ``template`` is the body of the creative's template: its ``variables`` are what a text may
    see, its fields' ``max_length`` the output limits. ``gateway``: the channel is delivered
    through the wallet gateway (its ``messageContent`` and ``redirectUrl`` limits apply)."""

    def __init__(
        self,
        creative_id: str,
        body: Mapping[str, Any],
        template: Mapping[str, Any] | None = None,
        *,
        channel: str | None = None,
        gateway: bool = False,
        seconds: float | None = None,
    ) -> None:
        self.id = creative_id
        self.channel = channel
        self.gateway = gateway
        self.seconds = templating.RENDER_SECONDS if seconds is None else seconds
        fields = (template or {}).get("fields") or {}

        def limit(name: str) -> int:
            spec = fields.get(name) or {}
            return int(spec.get("max_length") or DEFAULT_OUTPUT_LIMIT)

        url_limit = GATEWAY_REDIRECT_MAX if gateway else REDIRECTION_MAX
        self._title = _Text("title", body.get("title"), limit("title"))
        self._content = _Text("content", body.get("content"), limit("content"))
        redirection = body.get("redirection")
        self._is_list = isinstance(redirection, list)
        items = redirection if isinstance(redirection, list) else ([] if redirection is None else [redirection])
        self._redirections = [
            _Text("redirection" if not self._is_list else f"redirection[{index}]", item, limit("redirection"), url_limit=url_limit)
            for index, item in enumerate(items)
        ]
        if template is not None and "variables" in template:
            self._keys: tuple[str, ...] = tuple(dict.fromkeys([*(template.get("variables") or {}), *ALWAYS_AVAILABLE]))
        else:  # no template at hand: what the texts themselves read
            used: dict[str, None] = dict.fromkeys(ALWAYS_AVAILABLE)
            for text in (body.get("title"), body.get("content"), *items):
                if isinstance(text, str):
                    used.update(dict.fromkeys(analyze(text).variables))
            self._keys = tuple(used)
        self._timeouts = 0
        self._message_content = None
        if gateway:
            from engine.delivery.providers.gateway import message_content  # only for the gateway: it loads httpx

            self._message_content = message_content

    # -- rendering ----------------------------------------------------------------------------

    def _fail(self, field: str, reason: str, detail: str) -> RenderError:
        return RenderError(f"creative {self.id}: cannot render the {field}: {detail}", reason, f"{field}: {detail}")

    def _one(self, text: _Text, view: UserView, budget: Budget) -> Any:
        if text.refused is not None:
            raise self._fail(text.field, "template-syntax", f"the text is not allowed ({text.refused})")
        if text.template is None:
            value = text.constant
        else:
            budget.field, budget.chars = text.field, text.limit
            try:
                value = text.template.render(user=view)
            except RenderLimit as problem:
                raise self._fail(text.field, problem.reason, problem.detail) from None
            except Exception as problem:  # noqa: BLE001 - UndefinedError, SecurityError, filter errors
                message = getattr(problem, "message", None) or str(problem) or type(problem).__name__
                missing = _MISSING.search(message) if type(problem).__name__ == "UndefinedError" else None
                if missing:
                    name = missing.group(1) or missing.group(2)
                    raise self._fail(text.field, "missing-variable", f"the user has no {name!r} attribute (missing variable)") from None
                raise self._fail(text.field, "render-error", message) from None
        if value is None:
            return None
        if len(value) > text.limit:
            raise self._fail(text.field, "too-long", f"{len(value):,} characters; the limit is {text.limit:,}")
        if text.url_limit is not None:
            if len(value) > text.url_limit:
                where = "through the wallet gateway" if self.gateway else "for a redirection"
                raise self._fail(text.field, "url-invalid", f"the URL is {len(value):,} characters; at most {text.url_limit:,} {where}")
            if text.template is not None:
                problem = rendered_url_problem(value, text.origin)
                if problem is not None:
                    raise self._fail(text.field, "url-invalid", problem)
        return value

    def render(self, user: Mapping[str, Any]) -> tuple[Any, Any, Any]:
        """(title, content, redirection) for ``user`` (its attributes; only the declared ones and
        ``user_id`` are visible); raises RenderError naming the field and the reason."""
        if self._timeouts >= TIMEOUTS_BEFORE_SKIPPING:
            raise self._fail(
                "creative",
                "render-timeout",
                f"not rendered: its last {self._timeouts} renders each took more than "
                f"{self.seconds * 1000:.0f} ms, so it is skipped for the rest of this pass",
            )
        # None and "" are missing (the directory stores an empty cell as no attribute): a message
        # never has a blank hole
        view = UserView({key: value for key in self._keys if (value := user.get(key)) is not None and value != ""})
        budget = Budget(self.seconds)
        token = templating.activate(budget)
        try:
            title = self._one(self._title, view, budget)
            content = self._one(self._content, view, budget)
            if self._is_list:
                redirection: Any = [self._one(text, view, budget) for text in self._redirections]
            else:
                redirection = self._one(self._redirections[0], view, budget) if self._redirections else None
        except RenderError as problem:
            if problem.reason == "render-timeout":
                self._timeouts += 1
            raise
        finally:
            templating.release(token)
        self._timeouts = 0
        if self._message_content is not None:
            self._check_gateway_content(title, content, redirection)
        return title, content, redirection

    def _check_gateway_content(self, title: Any, content: Any, redirection: Any) -> None:
        if _json_bound(title, content, redirection) <= GATEWAY_CONTENT_MAX:
            return  # short enough however it is escaped: no need to build the JSON text here
        text = self._message_content(Message("", "", "", "", self.channel or "push", self.id, title, content, redirection))
        if len(text) > GATEWAY_CONTENT_MAX:
            raise self._fail(
                "content",
                "too-long",
                f"the gateway messageContent is {len(text):,} characters as JSON; the gateway takes at most {GATEWAY_CONTENT_MAX:,}",
            )


_JSON_OVERHEAD = 96
"""More than the keys, quotes and punctuation of ``messageContent`` around its texts
(``{"title":,"content":,"inbox":"miniprogram","redirections":[]}`` is 60 characters)."""


def _json_bound(title: Any, content: Any, redirection: Any) -> int:
    """An upper bound of the ``messageContent`` length: JSON writes a character as at most six
    (``\\uXXXX``), plus three per list item. Large when a value is not text (then it is measured)."""
    total = _JSON_OVERHEAD
    for value in (title, content, *(redirection if isinstance(redirection, list) else ())):
        if value is None:
            continue
        if not isinstance(value, str):
            return GATEWAY_CONTENT_MAX + 1
        total += 6 * len(value) + 3
    return total


def uses_gateway(channel: str, platform: Platform) -> bool:
    """Whether ``channel`` is delivered through the wallet gateway under ``platform``."""
    return isinstance(provider_config(channel, platform), GatewayProvider)


def creative_text(
    creative_id: str,
    body: Mapping[str, Any],
    template: Mapping[str, Any] | None,
    channel: str,
    platform: Platform,
) -> CreativeText:
    """The CreativeText delivery and pilot tests use for ``creative_id`` on ``channel``."""
    return CreativeText(creative_id, body, template, channel=channel, gateway=uses_gateway(channel, platform))
