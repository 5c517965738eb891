"""Fuzz targets (issue 10 item 8): one function per parser, each taking arbitrary bytes.

A target returns normally when the engine answered the input cleanly -- accepted it, or refused it
with its own error (a ``CampaignsError``, a located ``Problem``, a ``RenderError`` with a reason).
Anything else escaping a target is a bug: ``TypeError``, ``RecursionError``, ``OverflowError``, an
assertion. Targets also check the property "validate accepts => plan, schedule and a render
succeed": ``repository`` raises :class:`PropertyFailed` when a repository that validates cannot
be planned, scheduled or rendered with its template's examples.

``fuzz/run_all.py`` runs every target under atheris (libFuzzer: time and memory limits per
input); ``tests/fuzz/test_fuzz_properties.py`` runs them under hypothesis.

The gateway reply parser is fuzzed through its public entry point,
``engine.delivery.providers.gateway.parse_send_reply``, which raises only ``ReplyError``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine import jsonlimits
from engine.apply.approval import EVENT_MAX_BYTES, ApprovalPolicy, approval_from_event
from engine.clock import Clock
from engine.config import yamlload
from engine.config.repository import Repository
from engine.config.usercsv import UsersCsv
from engine.delivery.providers import gateway
from engine.delivery.render import CreativeText, RenderError
from engine.errors import CampaignsError
from engine.plan import planfile
from engine.plan.planner import compute_plan
from engine.schedule.occurrences import occurrences_between, preview
from engine.state.store import StateStore
from engine.templating import analyze
from engine.validation import filecheck
from engine.validation.pipeline import validate_repository

PROJECT = Path(__file__).resolve().parents[1]
EXAMPLE_PARTS = ("platform.yaml", "templates", "audiences", "creatives", "campaigns")
KINDS = ("task", "creative", "audience", "template", "campaign", "platform")
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)  # before the example's tasks end
RENDER_SECONDS = 0.5  # each field's time budget in these targets (the executor's is smaller)
# renders may fail for these reasons and still be a clean answer: a budget, a URL check, or a
# user without the attribute; "render-error" and "template-syntax" after validate accepted are bugs
CLEAN_RENDER_REASONS = frozenset({"too-long", "render-timeout", "url-invalid", "missing-variable"})


class PropertyFailed(AssertionError):
    """An accepted input that the next step could not use ("validate accepts => ..." broke)."""


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


# -- the YAML loader and the per-file checks ----------------------------------------------------


def yaml_file(data: bytes) -> None:
    """The YAML loader and every per-file check (schema, ids, dates, templates) of one file: the
    first byte chooses the kind. ``check_file`` never raises; the loader raises only YamlProblem."""
    if not data:
        return
    kind = KINDS[data[0] % len(KINDS)]
    raw = data[1:]
    try:
        yamlload.load(raw)
    except yamlload.YamlProblem:
        pass
    _digest, _data, problems, _facts = filecheck.check_file(raw, kind)
    for line, column, code, _severity, message in problems:
        if not (isinstance(line, int) and isinstance(column, int) and isinstance(message, str)):
            raise PropertyFailed(f"a malformed problem: {(line, column, code, message)!r}")


# -- the Jinja checker and renderer ---------------------------------------------------------------


def jinja(data: bytes) -> None:
    """The creative-language checker, then (when it accepts) the renderer with every declared
    variable given a value. A text the checker accepts compiles, never stalls (libFuzzer's
    -timeout), and renders for users whose values all have one type (all text, or all numbers,
    as a template's examples do); a failure is a RenderError with a reason, never an exception."""
    text = _text(data)
    analysis = analyze(text)
    if analysis.error is not None or analysis.unknown_names:
        return
    template = {
        "channel": "push",
        "fields": {"title": {"max_length": 200}, "content": {"max_length": 4096}},
        "variables": {name: {"example": "x"} for name in analysis.variables},
    }
    creative = CreativeText("fuzz", {"title": text, "content": text}, template, channel="push", seconds=RENDER_SECONDS)
    failures = []
    for value in ("Maria", 1250, "", 0):
        try:
            creative.render({name: value for name in analysis.variables})
            return
        except RenderError as problem:
            if problem.reason == "template-syntax":
                raise PropertyFailed(f"the checker accepted {text!r} but the renderer refused it: {problem}") from None
            if problem.reason in CLEAN_RENDER_REASONS:
                return
            failures.append(str(problem))
    raise PropertyFailed(f"the checker accepted {text!r} but no user can receive it: {failures[0]}")


# -- saved plans, GitHub events, gateway replies, users CSVs ------------------------------------


def saved_plan(data: bytes) -> None:
    """``campaigns apply PLAN``'s reader: a Plan, or PlanFileError."""
    try:
        planfile.parse(data, "fuzz.json")
    except CampaignsError:
        pass


def github_event(data: bytes) -> None:
    """The event reader and the approval it gives, under the first and an applied policy."""
    try:
        event = jsonlimits.loads(data, what="the event", max_bytes=EVENT_MAX_BYTES)
    except jsonlimits.JSONLimitError:
        return
    if not isinstance(event, dict):
        return
    applied = ApprovalPolicy.from_platform({"main_branch": "main", "approval": {"forbid_self_merge": True}})
    for policy in (ApprovalPolicy.first(), applied):
        try:
            approval = approval_from_event(event, policy, repository="acme/campaigns")
        except CampaignsError:
            continue
        if not approval.approved_by or not approval.author:
            raise PropertyFailed(f"an approval without logins: {approval!r}")
        if approval.approved_by.casefold() == approval.author.casefold() and (policy.first_apply or policy.forbid_self_merge):
            raise PropertyFailed(f"a self-merge approved: {approval!r}")


def gateway_entry_point() -> tuple[str, Callable[[bytes], Any], tuple[type[BaseException], ...]]:
    """The gateway reply parser to fuzz, and the errors that are clean refusals."""
    return "engine.delivery.providers.gateway.parse_send_reply", gateway.parse_send_reply, (gateway.ReplyError,)


def gateway_reply(data: bytes) -> None:
    """The gateway's reply parser: a reply, or its own error."""
    _name, parse, clean = gateway_entry_point()
    try:
        parse(data)
    except clean:
        pass


def users_csv(data: bytes) -> None:
    """The users CSV reader behind ``users import`` and audience CSVs (both passes)."""
    for passes in ("check", "rows"):
        try:
            reader = UsersCsv.from_bytes(data, "fuzz.csv")
            if passes == "check":
                reader.check()
                reader.sorted_problems()
            else:
                for _row in reader.rows():
                    pass
        except CampaignsError:
            pass


# -- "validate accepts => plan, schedule and a render succeed" ------------------------------------

_REPOSITORY_FILES = (
    "creatives/flash-a.yaml",
    "templates/push-promo.yaml",
    "campaigns/december-flash-sale/flash-sale-push.yaml",
    "audiences/high-points-ph.yaml",
    "platform.yaml",
    "creatives/weekly-points.yaml",
    "campaigns/rewards-2027/weekly-points-inbox.yaml",
)
_WORK: dict[str, Path] = {}


def _work_repository() -> Path:
    """A private copy of the shipped example (made once per process)."""
    if "repo" not in _WORK:
        folder = Path(tempfile.mkdtemp(prefix="campaigns-fuzz-"))
        for part in EXAMPLE_PARTS:
            source = PROJECT / part
            (shutil.copytree if source.is_dir() else shutil.copy2)(source, folder / part)
        _WORK["repo"] = folder
        _WORK["originals"] = folder / ".originals"
        (folder / ".originals").mkdir()
        for relative in _REPOSITORY_FILES:
            shutil.copy2(folder / relative, folder / ".originals" / relative.replace("/", "--"))
    return _WORK["repo"]


def repository(data: bytes) -> None:
    """One file of the example replaced by the input (the first byte chooses which); when the
    repository validates, it must plan, schedule and render with its templates' examples."""
    if not data:
        return
    root = _work_repository()
    relative = _REPOSITORY_FILES[data[0] % len(_REPOSITORY_FILES)]
    for other in _REPOSITORY_FILES:
        shutil.copy2(_WORK["originals"] / other.replace("/", "--"), root / other)
    (root / relative).write_bytes(data[1:])
    result = validate_repository(root, use_cache=False, clock=Clock.fixed(NOW))
    if result.has_errors or result.repository is None:
        return
    accepted(result.repository, root)


def accepted(repo: Repository, root: Path) -> None:
    """What a validated repository must allow: a plan against an empty state, each task's
    schedule, and a render of each creative with its template's examples."""
    state = root / ".campaigns" / "fuzz-state.db"
    if state.exists():
        os.remove(state)
    try:
        with StateStore.open(f"sqlite:///{state}", root) as store:
            compute_plan(repo, store, now=NOW, use_cache=False)
    except CampaignsError as problem:
        raise PropertyFailed(f"validate accepted, plan failed: {problem}") from None
    for task_id, task in repo.tasks.items():
        zone = repo.site_timezone(task_id)
        try:
            preview(task.model.schedule, zone, NOW)
            list(occurrences_between(task.model.schedule, zone, NOW.date(), NOW.date() + dt.timedelta(days=400)))
        except CampaignsError as problem:
            raise PropertyFailed(f"validate accepted, schedule of {task_id} failed: {problem}") from None
    for creative_id, creative in repo.creatives.items():
        template = repo.templates[creative.data["template"]].data
        examples = {name: spec.get("example") for name, spec in (template.get("variables") or {}).items()}
        text = CreativeText(creative_id, creative.data, template, channel=template["channel"], seconds=RENDER_SECONDS)
        try:
            text.render({**examples, "user_id": "u-fuzz"})
        except RenderError as problem:
            if problem.reason not in ("render-timeout", "missing-variable"):
                raise PropertyFailed(f"validate accepted, {creative_id} does not render with its examples: {problem}") from None


TARGETS: dict[str, Callable[[bytes], None]] = {
    "yaml_file": yaml_file,
    "jinja": jinja,
    "saved_plan": saved_plan,
    "github_event": github_event,
    "gateway_reply": gateway_reply,
    "users_csv": users_csv,
    "repository": repository,
}


def as_json(value: Any) -> bytes:
    return json.dumps(value).encode()
