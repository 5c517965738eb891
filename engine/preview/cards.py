"""One creative rendered for one tester, as the device would show it, with its limits.

Rendering goes through ``engine.delivery.render.creative_text``: the code path, limits and checks
that delivery and pilot tests use, so the page shows what a user would get, or the failure
delivery would record (``missing-variable``, ``too-long``, ``url-invalid``, ...), in place of the
message. When a field is too long, it is rendered once more without the length limits (never
sent) so the page can show the text and how far over the bar it goes. SMS texts are counted
with ``engine.sms``, as the plan counts them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine import sms
from engine.delivery.render import RenderError, creative_text

if TYPE_CHECKING:
    from engine.config.models import Platform

TEXT_FIELDS = ("title", "content", "redirection")


@dataclass(frozen=True)
class FieldView:
    """A rendered field and its length against the template's ``max_length`` (None: no limit)."""

    name: str
    text: str
    limit: int | None

    @property
    def length(self) -> int:
        return len(self.text)

    @property
    def over(self) -> bool:
        return self.limit is not None and self.length > self.limit

    @property
    def percent(self) -> int:
        """Width of the length bar (capped at 100)."""
        if not self.limit:
            return 0
        return min(100, round(100 * self.length / self.limit))


@dataclass(frozen=True)
class SmsView:
    encoding: str
    segments: int
    units: int
    per_segment: int
    forcing: str  # the characters that forced UCS-2, described; "" for GSM-7
    parts: tuple[str, ...]


@dataclass(frozen=True)
class Card:
    """A creative for one tester: the rendered fields, or the failure a user would hit."""

    creative: str
    tester: str
    profile: str  # "directory" | "examples"
    ok: bool
    fields: tuple[FieldView, ...] = ()
    reason: str | None = None  # the ledger's reason when not ok
    error: str | None = None
    failed_field: str | None = None
    sms: SmsView | None = None

    def field(self, name: str) -> FieldView | None:
        return next((f for f in self.fields if f.name == name), None)

    @property
    def redirections(self) -> tuple[str, ...]:
        return tuple(f.text for f in self.fields if f.name.startswith("redirection"))


def tester_profile(tester: str, known: Mapping[str, Mapping[str, Any]], template: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The attributes a tester is rendered with (as ``campaigns test`` does): the directory's,
    else the template's examples."""
    if tester in known:
        return {**known[tester], "user_id": tester}, "directory"
    examples = {name: (spec or {}).get("example") for name, spec in (template.get("variables") or {}).items()}
    return {**examples, "user_id": tester}, "examples"


def _limits(template: Mapping[str, Any]) -> dict[str, int | None]:
    fields = template.get("fields") or {}
    return {name: (fields.get(name) or {}).get("max_length") for name in TEXT_FIELDS}


def _unlimited(template: Mapping[str, Any]) -> dict[str, Any]:
    fields = {name: {k: v for k, v in (spec or {}).items() if k != "max_length"} for name, spec in (template.get("fields") or {}).items()}
    return {**template, "fields": fields}


def _field_views(rendered: tuple[Any, Any, Any], limits: Mapping[str, int | None]) -> tuple[FieldView, ...]:
    title, content, redirection = rendered
    views = []
    if title is not None:
        views.append(FieldView("title", str(title), limits["title"]))
    if content is not None:
        views.append(FieldView("content", str(content), limits["content"]))
    items = redirection if isinstance(redirection, list) else ([] if redirection is None else [redirection])
    for index, url in enumerate(items):
        name = "redirection" if not isinstance(redirection, list) else f"redirection[{index}]"
        views.append(FieldView(name, str(url), limits["redirection"]))
    return tuple(views)


def _sms_view(text: str | None) -> SmsView | None:
    if text is None:
        return None
    counted = sms.count(text)
    return SmsView(
        counted.encoding,
        counted.segments,
        counted.units,
        counted.per_segment,
        sms.describe(counted.forcing) if counted.forcing else "",
        sms.parts(text),
    )


def _fields_alone(
    creative_id: str,
    creative: Mapping[str, Any],
    template: Mapping[str, Any],
    channel: str,
    platform: Platform,
    user: Mapping[str, Any],
    limits: Mapping[str, int | None],
) -> tuple[FieldView, ...]:
    views: list[FieldView] = []
    for name in TEXT_FIELDS:
        if creative.get(name) is None:
            continue
        alone = {key: value for key, value in creative.items() if key not in TEXT_FIELDS or key == name}
        try:
            views.extend(_field_views(creative_text(creative_id, alone, template, channel, platform).render(user), limits))
        except RenderError:
            continue
    return tuple(views)


def render_card(
    creative_id: str,
    creative: Mapping[str, Any],
    template: Mapping[str, Any],
    channel: str,
    platform: Platform,
    tester: str,
    user: Mapping[str, Any],
    profile: str,
) -> Card:
    """``creative`` rendered for ``user`` through delivery's render path."""
    limits = _limits(template)
    try:
        rendered = creative_text(creative_id, creative, template, channel, platform).render(user)
    except RenderError as problem:
        failed_field = problem.detail.split(":", 1)[0]
        views: tuple[FieldView, ...] = ()
        if problem.reason == "too-long":  # show the text and how far over it goes; it is never sent
            try:
                views = _field_views(creative_text(creative_id, creative, _unlimited(template), channel, platform).render(user), limits)
            except RenderError:
                views = ()
        if not views:  # the fields that do render, each on its own, around the one that fails
            views = _fields_alone(creative_id, creative, template, channel, platform, user, limits)
        content = next((v.text for v in views if v.name == "content"), None)
        return Card(
            creative_id, tester, profile, False, views, problem.reason, problem.detail, failed_field,
            _sms_view(content) if channel == "sms" else None,
        )
    views = _field_views(rendered, limits)
    return Card(creative_id, tester, profile, True, views, sms=_sms_view(rendered[1]) if channel == "sms" else None)
