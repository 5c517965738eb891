"""Rules across files: references, channels, template fields, variables, deep links, paths.

These run on every validate (they are cheap); their findings carry a JSON path that the
pipeline turns into a line and column.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from engine.config.discovery import SourceFile
from engine.config.names import (
    FIRST_YEAR,
    GATEWAY_CONTENT_MAX,
    GATEWAY_REDIRECT_MAX,
    LAST_YEAR,
    SPAN_MAX_YEARS,
    USER_ID_MAX,
)
from engine.config.safefile import special_kind
from engine.config.usercsv import CsvFileError, UsersCsv
from engine.problems import ERROR, WARNING
from engine.templating import ALWAYS_AVAILABLE, DEFAULT_OUTPUT_LIMIT, is_template, preview_length, render, static_prefix
from engine.urlcheck import rendered_url_problem, url_origin
from engine.validation.cache import content_digest

PUSH_LIKE = ("push", "inbox-ewallet", "inbox-miniprogram")


@dataclass(frozen=True, slots=True)
class Finding:
    file: str
    path: tuple
    code: str
    message: str
    severity: str = ERROR
    at_key: bool = False
    line: int = 0  # a line of a file that is not YAML (a CSV row); 0: located by ``path``


@dataclass(slots=True)
class Entry:
    source: SourceFile
    data: dict[str, Any] | None  # None when the file failed its schema
    facts: dict[str, Any]


class Catalog:
    """Every file's data by kind and id; ``known`` also holds ids whose files failed to load."""

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries
        self.by_kind: dict[str, dict[str, Entry]] = {}
        for entry in entries:
            self.by_kind.setdefault(entry.source.kind, {}).setdefault(entry.source.id, entry)

    def known(self, kind: str, rid: str) -> bool:
        return rid in self.by_kind.get(kind, {})

    def data(self, kind: str, rid: str) -> dict[str, Any] | None:
        entry = self.by_kind.get(kind, {}).get(rid)
        return entry.data if entry else None

    def valid(self, kind: str) -> Iterator[Entry]:
        for entry in self.by_kind.get(kind, {}).values():
            if entry.data is not None:
                yield entry

    @property
    def platform(self) -> dict[str, Any] | None:
        return self.data("platform", "platform")


def _years_later(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def date_range_problems(start: str | dt.date, finish: str | dt.date) -> list[tuple[tuple, str]]:
    """``(path, message)`` for each ``date-range`` problem of a schedule's dates.

    Dates lie in the years 2000-2199 (outside them date arithmetic overflows, and nobody means
    them), the finish is not before the start, and the schedule spans at most ten years. The span
    bounds all the work a schedule can cause: a one-time task's single occurrence holds every
    window of every date of its span (the executor reads it lazily, but ``schedule`` prints it
    whole and its date list is kept), and a daily task's occurrences are counted for every plan.
    No campaign runs unchanged for a decade; a task meant to run longer is renewed as a new one.
    """
    start_date = start if isinstance(start, dt.date) else dt.date.fromisoformat(start)
    finish_date = finish if isinstance(finish, dt.date) else dt.date.fromisoformat(finish)
    problems = []
    for field, day in (("start_date", start_date), ("finish_date", finish_date)):
        if not FIRST_YEAR <= day.year <= LAST_YEAR:
            problems.append(
                (("schedule", field), f"{field} {day.isoformat()} is outside the years {FIRST_YEAR}-{LAST_YEAR}")
            )
    if problems:
        return problems
    if finish_date < start_date:
        problems.append(
            (("schedule", "finish_date"), f"finish_date {finish_date.isoformat()} is before start_date {start_date.isoformat()}")
        )
    elif finish_date >= _years_later(start_date, SPAN_MAX_YEARS):
        last = _years_later(start_date, SPAN_MAX_YEARS) - dt.timedelta(days=1)
        problems.append(
            (
                ("schedule", "finish_date"),
                f"the schedule spans {start_date.isoformat()} to {finish_date.isoformat()}, more than "
                f"{SPAN_MAX_YEARS} years; finish by {last.isoformat()} and renew the task as a new one for later dates",
            )
        )
    return problems


def _missing(kind: str, rid: str, known: list[str]) -> str:
    hint = difflib.get_close_matches(rid, known, n=1)
    return f"{kind} {rid!r} does not exist" + (f"; did you mean {hint[0]!r}?" if hint else "")


def check_tasks(catalog: Catalog) -> Iterator[Finding]:
    platform = catalog.platform
    sites = platform["sites"] if platform else None
    campaigns = catalog.by_kind.get("campaign", {})
    for entry in catalog.valid("task"):
        task, file = entry.data, entry.source.path
        if entry.source.campaign not in campaigns:
            yield Finding(
                file,
                (),
                "unknown-reference",
                f"campaign {entry.source.campaign!r} has no campaigns/{entry.source.campaign}/campaign.yaml",
            )
        site = sites.get(task["site"]) if sites is not None else None
        if sites is not None and site is None:
            yield Finding(file, ("site",), "unknown-reference", _missing("site", task["site"], list(sites)))
        if site is not None:
            if task["channel"] not in site["channels"]:
                yield Finding(
                    file,
                    ("channel",),
                    "channel-mismatch",
                    f"channel {task['channel']!r} is not enabled on site {task['site']!r} "
                    f"(enabled: {', '.join(site['channels'])})",
                )
            mini_program = task.get("mini_program")
            if mini_program is not None and mini_program not in site.get("mini_programs", []):
                yield Finding(
                    file,
                    ("mini_program",),
                    "unknown-reference",
                    f"mini program {mini_program!r} is not on site {task['site']!r}",
                )
        for index, audience_id in enumerate(task["audiences"]):
            if not catalog.known("audience", audience_id):
                yield Finding(
                    file,
                    ("audiences", index),
                    "unknown-reference",
                    _missing("audience", audience_id, list(catalog.by_kind.get("audience", {}))),
                )
                continue
            audience = catalog.data("audience", audience_id)
            if audience is not None and audience["site"] != task["site"]:
                yield Finding(
                    file,
                    ("audiences", index),
                    "unknown-reference",
                    f"audience {audience_id!r} belongs to site {audience['site']!r}, not {task['site']!r}",
                )
        for index, creative_id in enumerate(task["creatives"]):
            if not catalog.known("creative", creative_id):
                yield Finding(
                    file,
                    ("creatives", index),
                    "unknown-reference",
                    _missing("creative", creative_id, list(catalog.by_kind.get("creative", {}))),
                )
                continue
            yield from _task_creative(catalog, entry, index, creative_id, site)


def _task_creative(catalog: Catalog, entry: Entry, index: int, creative_id: str, site) -> Iterator[Finding]:
    task, file = entry.data, entry.source.path
    creative_entry = catalog.by_kind["creative"][creative_id]
    creative = creative_entry.data
    template = catalog.data("template", creative["template"]) if creative else None
    if template is None:
        return
    if template["channel"] != task["channel"]:
        yield Finding(
            file,
            ("creatives", index),
            "channel-mismatch",
            f"creative {creative_id!r} uses template {creative['template']!r} for channel "
            f"{template['channel']!r}, but this task sends {task['channel']!r}",
        )
    if template["status"] != "approved":
        yield Finding(
            file,
            ("creatives", index),
            "template-not-approved",
            f"creative {creative_id!r} uses template {creative['template']!r}, which is {template['status']}; "
            "the task cannot run until the template is approved",
            WARNING,
        )
    if site is not None:
        allowed = {"https", *site.get("deep_link_schemes", [])}
        for scheme, _, _ in creative_entry.facts.get("urls", []):
            if scheme not in allowed:
                yield Finding(
                    creative_entry.source.path,
                    ("redirection",),
                    "url-invalid",
                    f"redirection: the {scheme}: deep link is not allowed on site {task['site']!r} "
                    f"(used by task {entry.source.id!r}); allowed: {', '.join(sorted(allowed))}",
                )


def check_creatives(catalog: Catalog) -> Iterator[Finding]:
    for entry in catalog.valid("creative"):
        creative, file = entry.data, entry.source.path
        template_id = creative["template"]
        if not catalog.known("template", template_id):
            yield Finding(
                file,
                ("template",),
                "unknown-reference",
                _missing("template", template_id, list(catalog.by_kind.get("template", {}))),
            )
            continue
        template = catalog.data("template", template_id)
        if template is None:
            continue
        yield from _creative_fields(entry, template_id, template)
        yield from _rendered_urls(entry, template)
        if through_gateway(catalog.platform, template["channel"]):
            yield from _gateway_redirect_limit(entry, template["channel"])
            finding = content_too_long(entry, template)
            if finding is not None:
                yield finding


def _creative_fields(entry: Entry, template_id: str, template: dict) -> Iterator[Finding]:
    creative, file, facts = entry.data, entry.source.path, entry.facts
    specs = template["fields"]
    declared = set(template.get("variables", {})) | ALWAYS_AVAILABLE
    examples = {name: variable["example"] for name, variable in template.get("variables", {}).items()}
    for field in ("title", "content", "redirection"):
        spec, value = specs.get(field), creative.get(field)
        required = bool(spec and spec.get("required")) or (field == "redirection" and template["channel"] in PUSH_LIKE)
        if value in (None, "", []):
            if required:
                why = "" if spec and spec.get("required") else f" ({template['channel']} notifications need one)"
                yield Finding(file, (), "field-required", f"missing {field!r}, which template {template_id!r} requires{why}")
            continue
        if spec is None:
            if field != "redirection":
                yield Finding(file, (field,), "schema", f"template {template_id!r} has no {field!r} field", at_key=True)
            continue
        if field in facts.get("texts", {}):
            variables, literal, outputs = facts["texts"][field]
            length = preview_length(literal, outputs, examples)
            if spec.get("max_length") is not None and length > spec["max_length"]:
                yield Finding(
                    file,
                    (field,),
                    "field-too-long",
                    f"{field} is {length} characters (with the template's example values); "
                    f"template {template_id!r} allows at most {spec['max_length']}",
                )
            elif spec.get("max_length") is None and length > DEFAULT_OUTPUT_LIMIT:
                yield Finding(
                    file,
                    (field,),
                    "field-too-long",
                    f"{field} is {length:,} characters (with the template's example values); a field whose "
                    f"template sets no max_length renders at most {DEFAULT_OUTPUT_LIMIT:,} characters for a user",
                )
            yield from _unknown_variables(file, (field,), field, variables, declared, template_id)
    for index, (_, length, variables) in enumerate(facts.get("urls", [])):
        redirection = creative.get("redirection")
        path = ("redirection",) if isinstance(redirection, str) else ("redirection", index)
        spec = specs.get("redirection")
        if spec is not None and spec.get("max_length") is not None and length > spec["max_length"]:
            yield Finding(
                file,
                path,
                "field-too-long",
                f"redirection is {length} characters; template {template_id!r} allows at most {spec['max_length']}",
            )
        yield from _unknown_variables(file, path, "redirection", variables, declared, template_id)


def _rendered_urls(entry: Entry, template: dict) -> Iterator[Finding]:
    """``url-invalid``: a templated redirection that, rendered with the template's examples, would
    not be sent (another host, userinfo, whitespace...): delivery would fail every user like the
    examples, so validate does not accept it."""
    redirection = entry.data.get("redirection")
    items = redirection if isinstance(redirection, list) else [redirection]
    examples = {name: variable.get("example") for name, variable in (template.get("variables") or {}).items()}
    for index, url in enumerate(items):
        if not isinstance(url, str) or not is_template(url):
            continue
        origin = url_origin(static_prefix(url))
        if origin is None or not origin[0] or not origin[1]:
            continue  # no written-out scheme and host: the per-file URL check says so
        try:
            rendered = render(url, {**examples, "user_id": "u-example"}, limit=_MEASURE_LIMIT)
        except Exception:  # noqa: BLE001 - a text that does not render is another rule's finding
            continue
        problem = rendered_url_problem(rendered or "", origin)
        if problem is not None:
            shown = rendered if len(rendered or "") <= 80 else rendered[:77] + "..."
            yield Finding(
                entry.source.path,
                ("redirection",) if not isinstance(redirection, list) else ("redirection", index),
                "url-invalid",
                f"rendered with the template's examples ({shown!r}), {problem.replace('the rendered URL', 'the URL')}; "
                "a user like the examples would not get it (put variables after a '/' or '?', and use |urlencode)",
            )


# --- what the channel's provider accepts (a template without max_length has only these limits) ---

INBOXES = {"inbox-ewallet": "ewallet", "inbox-miniprogram": "miniprogram"}


def through_gateway(platform: dict[str, Any] | None, channel: str) -> bool:
    """Whether ``platform.yaml`` delivers ``channel`` through the wallet gateway (its own entry, else ``default``)."""
    providers = (platform or {}).get("providers") or {}
    config = providers.get(channel) or providers.get("default") or {}
    return config.get("type") == "gateway"


def _gateway_redirect_limit(entry: Entry, channel: str) -> Iterator[Finding]:
    """The gateway's ``redirectUrl`` takes at most 1,024 characters (2,048 elsewhere, see filecheck)."""
    redirection = entry.data.get("redirection")
    for index, (_, length, _) in enumerate(entry.facts.get("urls", [])):
        if length > GATEWAY_REDIRECT_MAX:
            yield Finding(
                entry.source.path,
                ("redirection",) if isinstance(redirection, str) else ("redirection", index),
                "url-invalid",
                f"redirection is {length:,} characters; {channel} is delivered through the wallet gateway, "
                f"whose redirectUrl takes at most {GATEWAY_REDIRECT_MAX:,}",
            )


def gateway_content(title: Any, content: Any, redirection: Any, channel: str) -> str:
    """The gateway's ``messageContent`` JSON text, as the gateway provider builds it (a test holds
    the two together; validation does not import the delivery layer)."""
    body: dict[str, Any] = {"title": title, "content": content}
    if channel in INBOXES:
        body["inbox"] = INBOXES[channel]
    if isinstance(redirection, list) and len(redirection) > 1:  # redirectUrl carries one; the others ride along
        body["redirections"] = redirection
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


_MEASURE_LIMIT = 4 * GATEWAY_CONTENT_MAX  # render past the limit, to say by how much it is exceeded


def content_too_long(entry: Entry, template: dict[str, Any]) -> Finding | None:
    """``content-too-long``: the creative, rendered with the template's examples, makes a gateway
    ``messageContent`` over 4,096 characters. None when it fits, or when a field does not render
    (template-syntax and variable-unknown report that)."""
    creative = entry.data
    user = {name: variable["example"] for name, variable in (template.get("variables") or {}).items()}
    user.setdefault("user_id", "u" * USER_ID_MAX)  # the longest id a user can have
    texts = entry.facts.get("texts", {})
    rendered: dict[str, Any] = {}
    try:
        for field in ("title", "content"):
            value = creative.get(field)
            if value is not None and field not in texts:
                return None  # it did not pass its own checks
            rendered[field] = render(value, user, limit=_MEASURE_LIMIT)
        redirection = creative.get("redirection")
        urls = [redirection] if isinstance(redirection, str) else list(redirection or [])
        if len(entry.facts.get("urls", [])) != len(urls):
            return None
        shown = [render(url, user, limit=_MEASURE_LIMIT) for url in urls]
        rendered["redirection"] = shown[0] if isinstance(redirection, str) else (shown if redirection is not None else None)
    except Exception:  # noqa: BLE001 - a field that does not render is another rule's finding
        return None
    length = len(gateway_content(rendered["title"], rendered["content"], rendered["redirection"], template["channel"]))
    if length <= GATEWAY_CONTENT_MAX:
        return None
    return Finding(
        entry.source.path,
        ("content",) if creative.get("content") is not None else (),
        "content-too-long",
        f"rendered with the template's examples, the message is {length:,} characters as the wallet gateway's "
        f"messageContent (title, content and inbox as JSON); the gateway takes at most {GATEWAY_CONTENT_MAX:,}",
    )


def _unknown_variables(file, path, field, variables, declared, template_id) -> Iterator[Finding]:
    for name in variables:
        if name not in declared:
            known = ", ".join(sorted(declared - ALWAYS_AVAILABLE)) or "none"
            yield Finding(
                file,
                path,
                "variable-unknown",
                f"{field}: uses user.{name}, which template {template_id!r} does not declare (declared: {known})",
            )


def check_audiences(catalog: Catalog, root: str) -> tuple[list[Finding], dict[str, dict[str, str]]]:
    """Audience references and CSV files; also returns each audience's attachments (path -> digest)."""
    findings: list[Finding] = []
    attachments: dict[str, dict[str, str]] = {}
    platform = catalog.platform
    sites = platform["sites"] if platform else None
    real_root = os.path.realpath(root)
    for entry in catalog.valid("audience"):
        audience, file = entry.data, entry.source.path
        site = sites.get(audience["site"]) if sites is not None else None
        if sites is not None and site is None:
            findings.append(Finding(file, ("site",), "unknown-reference", _missing("site", audience["site"], list(sites))))
        mini_program = audience.get("mini_program")
        if site is not None and mini_program is not None and mini_program not in site.get("mini_programs", []):
            findings.append(
                Finding(file, ("mini_program",), "unknown-reference", f"mini program {mini_program!r} is not on site {audience['site']!r}")
            )
        source = audience["source"]
        for key in ("include", "exclude"):
            for index, other in enumerate(source.get(key) or []):
                if not catalog.known("audience", other):
                    findings.append(
                        Finding(file, ("source", key, index), "unknown-reference",
                                _missing("audience", other, list(catalog.by_kind.get("audience", {}))))
                    )
                elif other == entry.source.id:
                    findings.append(Finding(file, ("source", key, index), "unknown-reference", "an audience cannot include itself"))
        if source.get("csv"):
            csv_findings, attachment = _check_csv(file, source["csv"], root, real_root)
            findings.extend(csv_findings)
            if attachment:
                attachments[entry.source.id] = attachment
    findings.extend(_include_cycles(catalog))
    return findings, attachments


def _check_csv(file: str, reference: str, root: str, real_root: str) -> tuple[list[Finding], dict]:
    """An audience's CSV, streamed (never read whole): where it is, its header (``schema`` at the
    audience's ``source.csv``) and every row as ``users import`` checks it (``csv-invalid`` at
    the CSV's own line). Returns the findings and, when the file was read, its attachment."""
    path = ("source", "csv")
    if os.path.isabs(reference):
        return [Finding(file, path, "path-outside-repo", f"{reference!r} is an absolute path; give a path relative to the audience file")], {}
    target = os.path.realpath(os.path.join(root, os.path.dirname(file), reference))
    if not (target == real_root or target.startswith(real_root + os.sep)):
        return [Finding(file, path, "path-outside-repo", f"{reference!r} points outside the repository")], {}
    relative = os.path.relpath(target, real_root).replace(os.sep, "/")
    try:
        status = os.stat(target)
    except FileNotFoundError:
        return [Finding(file, path, "unknown-reference", f"CSV file {relative!r} does not exist")], {}
    except OSError as bad:
        return [Finding(file, path, "unknown-reference", f"cannot read CSV file {relative!r}: {bad.strerror}")], {}
    if not stat.S_ISREG(status.st_mode):
        kind = "a folder" if stat.S_ISDIR(status.st_mode) else special_kind(status.st_mode)
        return [Finding(file, path, "unknown-reference", f"CSV file {relative!r} is {kind}, not a regular file; it is not read")], {}
    try:
        reader = UsersCsv.from_path(target, name=relative)
    except CsvFileError as bad:
        return [Finding(file, path, "schema", f"CSV file {bad}")], {}
    try:
        reader.check()
    except CsvFileError as bad:
        if "UTF-8" in str(bad):
            return [Finding(file, path, "schema", f"CSV file {bad}")], {}
        return [Finding(relative, (), "csv-invalid", _without_name(str(bad), relative), line=bad.line)], {}
    findings = [
        Finding(relative, (), "csv-invalid", problem.message, line=problem.line)
        for problem in reader.sorted_problems()
    ]
    if reader.problem_count > len(findings):
        findings.append(
            Finding(relative, (), "csv-invalid", f"{reader.problem_count:,} bad rows in all; the first {len(findings)} are listed", line=1)
        )
    digest = content_digest(root, relative)
    if digest is None:
        return [*findings, Finding(file, path, "unknown-reference", f"cannot read CSV file {relative!r}")], {}
    return findings, {relative: digest}


def _without_name(message: str, name: str) -> str:
    """A CSV reader's message without "NAME line N: " in front: the finding is at that line."""
    return re.sub(r"\A%s(?: line \d+)?:? " % re.escape(name), "", message)


def _include_cycles(catalog: Catalog) -> Iterator[Finding]:
    graph = {
        entry.source.id: [other for other in (entry.data["source"].get("include") or []) + (entry.data["source"].get("exclude") or [])]
        for entry in catalog.valid("audience")
    }
    state: dict[str, int] = {}  # 1 visiting, 2 done
    reported: set[str] = set()

    def visit(node: str, trail: list[str]) -> Iterator[Finding]:
        state[node] = 1
        for other in graph.get(node, []):
            if state.get(other) == 1 and other not in reported:
                cycle = trail[trail.index(other):] + [other] if other in trail else [node, other]
                reported.add(other)
                yield Finding(
                    catalog.by_kind["audience"][other].source.path,
                    ("source",),
                    "unknown-reference",
                    f"audiences include each other in a cycle: {' -> '.join(cycle)}",
                )
            elif other in graph and state.get(other) is None:
                yield from visit(other, trail + [other])
        state[node] = 2

    for node in graph:
        if state.get(node) is None:
            yield from visit(node, [node])


def check_unused(catalog: Catalog) -> Iterator[Finding]:
    """Warn about resources nothing refers to (not while a referring file failed to load)."""
    loaded = {kind: all(entry.data is not None for entry in catalog.by_kind.get(kind, {}).values()) for kind in ("creative", "task", "audience")}
    used_templates = {entry.data["template"] for entry in catalog.valid("creative")}
    used_creatives, used_audiences = set(), set()
    for entry in catalog.valid("task"):
        used_creatives.update(entry.data["creatives"])
        used_audiences.update(entry.data["audiences"])
    for entry in catalog.valid("audience"):
        source = entry.data["source"]
        used_audiences.update(source.get("include") or [])
        used_audiences.update(source.get("exclude") or [])
    referrers = {"template": ("creative",), "creative": ("task",), "audience": ("task", "audience")}
    for kind, used in (("template", used_templates), ("creative", used_creatives), ("audience", used_audiences)):
        if not all(loaded[referrer] for referrer in referrers[kind]):
            continue
        for rid, entry in catalog.by_kind.get(kind, {}).items():
            if rid not in used and entry.data is not None:
                by = {"template": "creative", "creative": "task", "audience": "task"}[kind]
                yield Finding(entry.source.path, (), "unused", f"no {by} uses {kind} {rid!r}", WARNING)
