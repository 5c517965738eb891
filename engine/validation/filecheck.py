"""Checks that need nothing but the file itself.

Their result depends only on the file's bytes and kind, so it is cached by content
digest and computed in parallel worker processes on a cold run. Everything here
returns plain data (marshal-able): ``(digest, data, problems, facts)``.
"""

from __future__ import annotations

import difflib
import gc
import hashlib
import os
import re
import zoneinfo
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from engine.config import yamlload
from engine.config.models import MODELS, Schedule
from engine.config.names import REDIRECTION_MAX
from engine.problems import ERROR
from engine.schedule.occurrences import has_occurrences
from engine.templating import analyze, is_template, static_prefix
from engine.validation.rules import date_range_problems

# (line, column, code, severity, message)
RawProblem = tuple[int, int, str, str, str]
FileResult = tuple[str, Any, list, dict]

FORBIDDEN_SCHEMES = frozenset({"http", "javascript", "data", "vbscript", "file", "ftp", "blob", "about"})
TEXT_FIELDS = ("title", "content")
_EXPRESSION = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_MINUTES = re.compile(r"^(\d{1,2}):(\d{2})\Z")


def digest_bytes(raw: bytes) -> str:
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def digest_file(path: str | os.PathLike) -> str | None:
    """Content digest of a file, or None when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            return digest_bytes(handle.read())
    except OSError:
        return None


def minutes(wall_time: str) -> int:
    hours, mins = _MINUTES.match(wall_time).groups()
    return int(hours) * 60 + int(mins)


def _fmt_duration(total: int) -> str:
    return f"{total // 60} h {total % 60:02d} min"


class _Findings:
    """Collects problems located against the file's node tree."""

    __slots__ = ("root", "items")

    def __init__(self, root) -> None:
        self.root = root
        self.items: list[RawProblem] = []

    def add(self, path: tuple, code: str, message: str, *, at_key: bool = False, severity: str = ERROR) -> None:
        line, column = yamlload.locate(self.root, path, key=at_key)
        self.items.append((line, column, code, severity, message))


def check_url(url: str) -> str | None:
    """Why a redirection URL is not acceptable on its own, or None. Deep links are checked per site later.

    A templated URL must spell out its scheme and host before its first ``{{ }}``: delivery
    checks every rendered URL against them (``engine.delivery.render``)."""
    if len(url) > REDIRECTION_MAX:
        return f"the URL is {len(url)} characters long; at most {REDIRECTION_MAX}"
    templated = is_template(url)
    shape = _EXPRESSION.sub("x", url) if templated else url
    if not shape or any(ch.isspace() or ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F for ch in shape):
        return f"{url!r} is not a URL (it is empty or contains spaces or control characters)"
    try:
        parts = urlsplit(shape)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0-65535
    except ValueError as bad:
        return f"{url!r} is not a valid URL ({bad})"
    scheme = parts.scheme.lower()
    if not scheme:
        return f"{url!r} has no scheme; write https://... or a deep link the site allows"
    if scheme in FORBIDDEN_SCHEMES:
        return f"the {scheme}: scheme is not allowed; use https:// or a deep link the site allows"
    if "@" in parts.netloc:
        return f"{url!r} carries a user name or password before its host; a link must name its host plainly"
    if scheme == "https" and not parts.hostname:
        return f"{url!r} has no host name"
    if templated:
        try:
            head = urlsplit(static_prefix(url))
        except ValueError as bad:
            return f"{url!r} is not a valid URL ({bad})"
        if head.scheme.lower() != scheme:
            return f"{url!r}: the scheme must be written out, not come from a variable"
        if parts.netloc and not head.hostname:
            return f"{url!r}: the host must be written out before the first {{{{ }}}}, not come from a variable"
    return None


def url_scheme(url: str) -> str:
    return urlsplit(_EXPRESSION.sub("x", url)).scheme.lower()


def _check_task(data: dict, found: _Findings, model: Any = None) -> None:
    schedule = data["schedule"]
    start, finish = schedule["start_date"], schedule["finish_date"]
    dates_in_range = True
    for path, message in date_range_problems(start, finish):
        found.add(path, "date-range", message)
        dates_in_range = False
    previous_finish = None
    for index, window in enumerate(schedule["windows"]):
        begin, end = minutes(window["start"]), minutes(window["finish"])
        span = f"{window['start']}–{window['finish']}"
        if end <= begin:
            found.add(
                ("schedule", "windows", index),
                "window-order",
                f"window {span} finishes at or before it starts",
            )
        elif end - begin <= 120:
            found.add(
                ("schedule", "windows", index),
                "window-too-short",
                f"window {span} lasts {_fmt_duration(end - begin)}; a window must last more than 2 hours",
            )
        if previous_finish is not None and begin <= previous_finish[0]:
            found.add(
                ("schedule", "windows", index, "start"),
                "window-order",
                f"window {span} starts at or before the previous window's finish {previous_finish[1]}; "
                "each window must start later than the one before it finishes",
            )
        if previous_finish is None or end > previous_finish[0]:
            previous_finish = (end, window["finish"])
    if dates_in_range:
        _check_occurrences(model.schedule if model is not None else schedule, found)


def _check_occurrences(schedule: Any, found: _Findings) -> None:
    if isinstance(schedule, dict):
        schedule = Schedule.model_validate(schedule)
    if not has_occurrences(schedule):
        found.add(
            ("schedule",),
            "no-occurrences",
            "this schedule never delivers: no date in the range falls on a scheduled day that is not do-not-disturb",
        )


def _check_creative(data: dict, found: _Findings) -> dict:
    facts: dict[str, Any] = {"texts": {}, "urls": []}
    for field in TEXT_FIELDS:
        text = data.get(field)
        if text is None:
            continue
        analysis = analyze(text)
        if analysis.error:
            found.add((field,), "template-syntax", f"{field}: {analysis.error}")
            continue
        for name in analysis.unknown_names:
            found.add(
                (field,),
                "variable-unknown",
                f"{field}: uses {{{{ {name} }}}}; only user.<variable> (declared by the template) is available",
            )
        facts["texts"][field] = [list(analysis.variables), analysis.literal_length, list(analysis.outputs)]
    redirection = data.get("redirection")
    urls = [redirection] if isinstance(redirection, str) else list(redirection or [])
    for index, url in enumerate(urls):
        path = ("redirection",) if isinstance(redirection, str) else ("redirection", index)
        label = "redirection" if isinstance(redirection, str) else f"redirection[{index}]"
        analysis = analyze(url)
        if analysis.error:
            found.add(path, "template-syntax", f"{label}: {analysis.error}")
            continue
        for name in analysis.unknown_names:
            found.add(path, "variable-unknown", f"{label}: uses {{{{ {name} }}}}; only user.<variable> is available")
        reason = check_url(url)
        if reason:
            found.add(path, "url-invalid", f"{label}: {reason}")
            continue
        facts["urls"].append([url_scheme(url), len(url), list(analysis.variables)])
    return facts


def _check_platform(data: dict, found: _Findings) -> None:
    for site_id, site in data["sites"].items():
        zone = site["timezone"]
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            hint = difflib.get_close_matches(zone, sorted(zoneinfo.available_timezones()), n=1)
            found.add(
                ("sites", site_id, "timezone"),
                "schema",
                f"sites.{site_id}.timezone: {zone!r} is not an IANA time zone"
                + (f"; did you mean {hint[0]!r}?" if hint else " (for example Asia/Manila)"),
            )


def _strict_model(kind: str, data: Any) -> Any:
    """The fast path: strict pydantic-core validation of the loaded data.

    The models are built so that whatever they accept the generated JSON Schema accepts too
    (tests/config/test_schemas.py holds them to it), so a document they accept
    needs no jsonschema pass; anything else goes to jsonschema, which has the final word and
    locates every problem. pydantic-core is about forty times faster on our documents.
    """
    try:
        return MODELS[kind].model_validate(data, strict=True)
    except ValidationError:
        return None


def schema_findings(kind: str, data: Any) -> list:
    from engine.validation.schema_check import schema_findings as findings

    return findings(kind, data)


def check_file(raw: bytes, kind: str) -> FileResult:
    """Parse, schema-check and self-check one file. Never raises for bad content."""
    digest = digest_bytes(raw)
    try:
        parsed = yamlload.parse(yamlload.decode(raw))
    except yamlload.YamlProblem as bad:
        return digest, None, [(bad.line, bad.column, bad.code, ERROR, bad.message)], {}
    found = _Findings(parsed.root)
    found.items.extend((dup.line, dup.column, dup.code, ERROR, dup.message) for dup in parsed.duplicates)
    data = yamlload.to_json(parsed.data)
    model = _strict_model(kind, parsed.data)
    schema = [] if model is not None else schema_findings(kind, data)
    for finding in schema:
        found.add(finding.path, finding.code, finding.message, at_key=finding.at_key)
    facts: dict = {}
    structural = [finding for finding in schema if finding.code == "schema"]
    if not structural:
        if kind == "task":
            _check_task(data, found, model)
        elif kind == "creative":
            facts = _check_creative(data, found)
        elif kind == "platform":
            _check_platform(data, found)
    return digest, None if structural else data, found.items, facts


def check_batch(batch: list[tuple[bytes, str]]) -> list[FileResult]:
    """Worker entry point: check a batch of (bytes, kind)."""
    with gc_paused():
        return [check_file(raw, kind) for raw, kind in batch]


@contextmanager
def gc_paused():
    """Loading builds many small containers and no reference cycles; the cyclic collector
    would rescan the growing heap over and over (it doubled parse time), so it waits."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
