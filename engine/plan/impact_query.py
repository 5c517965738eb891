"""The state side of a plan's impact: audience sizes before and after, and the cap forecast.

Runs in whichever process holds the state store (``engine.plan.source``: in-process or the
forked reader). Every number is a ``COUNT(*)`` or a ``SUM`` over the compiled audience SQL
(``engine.delivery.audiences``, ``engine.delivery.forecast``): members never come into Python.

``before`` sizes count the **stored** definitions (the task and audience bodies the last apply
stored, read here from the state), ``after`` sizes the desired ones the planner sends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine import sms
from engine.config.models import Platform
from engine.delivery import forecast
from engine.delivery.audience_rules import MissingContent
from engine.delivery.directory import NoDirectory, known_attributes, open_directory
from engine.errors import CampaignsError

if TYPE_CHECKING:
    from engine.plan.source import SizeRequest
    from engine.state import StateStore

NO_DIRECTORY = "no user directory was imported into the state (campaigns users import FILE.csv), so audience sizes are unknown"


@dataclass
class ImpactRequest:
    """What the planner wants counted besides the changed tasks' sizes (``SizeRequest.tasks``)."""

    before: list[str] = field(default_factory=list)  # tasks also counted under their stored definition
    audiences: dict[str, bool] = field(default_factory=dict)  # changed audience -> still desired (False: deleted)
    forecast_tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # running/planned task -> body
    day_sets: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)  # (site, tasks due on a day), distinct
    caps: dict[str, int | None] = field(default_factory=dict)  # site -> max_per_user_per_day
    affected: dict[str, dict[str, Any]] = field(default_factory=dict)  # unchanged running task a changed audience reaches -> body


@dataclass
class ImpactAnswer:
    """Counts, and why a count is missing (``reasons``: task id or ``audience.ID`` -> message)."""

    directory: bool
    after: dict[str, int | None] = field(default_factory=dict)
    before: dict[str, int | None] = field(default_factory=dict)
    audiences: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    sets: dict[tuple[str, ...], tuple[int, int, int, int, tuple[int, ...]]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # forecast task -> why it could not be counted
    affected: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)  # task -> (before, after)
    segments_before: dict[str, list[int]] = field(default_factory=dict)  # stored SMS task -> segments per creative


def _stored_bodies(store: StateStore, task_ids: list[str], audience_ids: list[str]) -> tuple[dict, dict]:
    """Stored task bodies, and every stored audience body they (and ``audience_ids``) reach."""
    stored_tasks = {a[5:]: r.body for a, r in store.resources([f"task.{t}" for t in task_ids]).items()}
    audiences: dict[str, dict] = {}
    wanted = set(audience_ids)
    for body in stored_tasks.values():
        wanted.update(body.get("audiences") or [])
    while wanted - audiences.keys():
        fetch = sorted(wanted - audiences.keys())
        found = {a[9:]: r.body for a, r in store.resources([f"audience.{a}" for a in fetch]).items()}
        for rid in fetch:
            body = found.get(rid)
            audiences[rid] = body if body is not None else {}
            source = (body or {}).get("source") or {}
            wanted.update(source.get("include") or [])
            wanted.update(source.get("exclude") or [])
    return stored_tasks, {rid: body for rid, body in audiences.items() if body}


def _stored_segments(store: StateStore, stored_tasks: dict[str, dict]) -> dict[str, list[int]]:
    """Segments of each stored creative of the stored SMS tasks (rendered with the stored
    template's examples): the before side of the plan's SMS cost."""
    tasks = {t: body for t, body in stored_tasks.items() if body.get("channel") == "sms"}
    if not tasks:
        return {}
    creatives = {a[9:]: r.body for a, r in store.resources(
        sorted({f"creative.{c}" for body in tasks.values() for c in body.get("creatives") or []})
    ).items()}
    templates = {a[9:]: r.body for a, r in store.resources(
        sorted({f"template.{c.get('template')}" for c in creatives.values()})
    ).items()}
    found: dict[str, list[int]] = {}
    for task_id, body in tasks.items():
        counts = []
        for creative_id in body.get("creatives") or []:
            creative = creatives.get(creative_id)
            template = templates.get((creative or {}).get("template"))
            text = sms.example_text(creative, template) if creative and template else None
            if text is not None:
                counts.append(sms.count(text).segments)
        if counts:
            found[task_id] = counts
    return found


def _size(directory: StateStore, body: dict, audiences: dict, task_id: str | None, attachments: Any) -> tuple[int | None, str | None]:
    # the compiler (13 ms to import) runs in the state reader; every plan process imports this module
    from engine.delivery.audiences import _prepare

    try:
        prepared = _prepare(directory, task_id, body, audiences, snapshot=False, attachments=attachments)
    except NoDirectory:
        return None, NO_DIRECTORY
    except MissingContent as problem:
        return None, str(problem)
    except CampaignsError as problem:
        return None, f"the audience cannot be counted: {problem}"
    with directory.reading() as conn:
        return sum(int(conn.execute(count).scalar_one()) for count in prepared.counts), None


def impact_from_directory(store: StateStore, request: SizeRequest) -> ImpactAnswer:
    """Sizes after (``request.tasks``) and, per ``request.impact``, before, of changed
    audiences, and the forecast's counts per distinct set of tasks due on a day."""
    from engine.delivery.audiences import task_membership  # as in _size
    from engine.plan.source import AUDIENCE_SIZE_LIMIT  # engine.plan.source imports this module

    impact = request.impact
    assert impact is not None
    platform = Platform.model_validate(request.platform)
    with open_directory(platform, store, request.base_dir) as directory:
        answer = ImpactAnswer(directory=known_attributes(directory) is not None)
        attachments = request.attachments
        for task_id, body in list(request.tasks.items())[:AUDIENCE_SIZE_LIMIT]:
            answer.after[task_id], reason = _size(directory, body, request.audiences, task_id, attachments)
            if reason:
                answer.reasons[task_id] = reason
        affected = dict(list(impact.affected.items())[:AUDIENCE_SIZE_LIMIT])
        stored_tasks, stored_audiences = _stored_bodies(
            store, impact.before[:AUDIENCE_SIZE_LIMIT] + list(affected), list(impact.audiences)[:AUDIENCE_SIZE_LIMIT]
        )
        for task_id, body in affected.items():
            stored = stored_tasks.get(task_id)
            before = _size(directory, stored, stored_audiences, task_id, store)[0] if stored is not None else None
            answer.affected[task_id] = (before, _size(directory, body, request.audiences, task_id, attachments)[0])
        answer.segments_before = _stored_segments(store, stored_tasks)
        for task_id in impact.before[:AUDIENCE_SIZE_LIMIT]:
            body = stored_tasks.get(task_id)
            if body is not None:
                answer.before[task_id], reason = _size(directory, body, stored_audiences, task_id, store)
                if reason and task_id not in answer.reasons:
                    answer.reasons[task_id] = reason
        for audience_id, present in list(impact.audiences.items())[:AUDIENCE_SIZE_LIMIT]:
            pseudo = {"audiences": [audience_id]}
            before = after = None
            if audience_id in stored_audiences:
                before, reason = _size(directory, pseudo, stored_audiences, None, store)
                if reason:
                    answer.reasons[f"audience.{audience_id}"] = reason
            if present:
                after, reason = _size(directory, pseudo, request.audiences, None, attachments)
                if reason:
                    answer.reasons[f"audience.{audience_id}"] = reason
            answer.audiences[audience_id] = (before, after)
        if not answer.directory or not impact.day_sets:
            return answer
        memberships = {}
        for task_id, body in impact.forecast_tasks.items():
            try:
                memberships[task_id] = task_membership(directory, body, request.audiences, task_id=task_id, attachments=attachments)
            except CampaignsError as problem:
                answer.skipped[task_id] = str(problem)
        order = list(memberships)
        number = {task: index for index, task in enumerate(order)}
        combos = forecast.combinations(directory, [memberships[t] for t in order])  # one query, every day
        for site, tasks in impact.day_sets:
            due = tuple(t for t in tasks if t in memberships)
            counted = forecast.tally(combos, [number[t] for t in due], impact.caps.get(site))
            by_task = dict(zip(due, counted.capped_by_task))
            answer.sets[tasks] = (
                counted.messages,
                counted.users,
                counted.capped,
                counted.capped_messages,
                tuple(by_task.get(t, 0) for t in tasks),
            )
    return answer
