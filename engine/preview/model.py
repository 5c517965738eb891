"""The preview page as a value: every chosen task with its cards, calendar, plan figures and
changes, built from the repository, the state and the plan (``engine.plan``).

The plan is read in its JSON form (``Plan.to_json``), the contract reviewers and CI already see:
the page shows the fields the plan has (``audience_size``, ``warnings``, ``sms``, ``forecast``,
blockers, field differences) and says so when the plan has none. For a changed creative (or a
creative whose template changed) the stored version is rendered next to the new one, for the
same testers.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.errors import UsageError
from engine.pilot import check_testers_known, choose_testers, directory_attributes
from engine.plan.render import show_value
from engine.preview.calendar import TaskCalendar, task_calendar
from engine.preview.cards import Card, render_card, tester_profile

if TYPE_CHECKING:
    from engine.config.repository import Repository
    from engine.state import StateStore

EXAMPLES_TESTER = "example-user"
"""Who a task without any tester is rendered for (with the template's examples)."""


@dataclass(frozen=True)
class DiffLine:
    path: str
    kind: str
    old: str | None
    new: str | None


@dataclass(frozen=True)
class Side:
    """One version of a creative: its cards, one per tester."""

    label: str
    cards: tuple[Card, ...]


@dataclass(frozen=True)
class CreativeView:
    id: str
    name: str
    template: str
    action: str  # the plan's action for creative.<id> (or "no-op")
    new: Side
    old: Side | None = None  # the stored version, when it differs
    diffs: tuple[DiffLine, ...] = ()


@dataclass(frozen=True)
class TaskView:
    id: str
    name: str
    campaign: str
    site: str
    site_name: str
    mini_program: str | None
    channel: str
    status: str  # desired status in the file
    testers: tuple[str, ...]
    creatives: tuple[CreativeView, ...]
    calendar: TaskCalendar
    action: str  # the plan's action for task.<id>
    transition: str | None
    audience_before: int | None
    audience_after: int | None
    audience_known: bool
    audience_reason: str | None
    diffs: tuple[DiffLine, ...]
    blockers: tuple[tuple[str, str], ...]
    warnings: tuple[tuple[str, str], ...]
    notes: tuple[str, ...]
    sms: tuple[tuple[str, dict[str, Any]], ...]  # (creative, the plan's sms fields)
    sms_cost: Mapping[str, Any] | None = None  # the plan's {"before", "after", "currency"}

    @property
    def app_name(self) -> str:
        return self.site_name + (f" · {self.mini_program}" if self.mini_program else "")

    @property
    def failures(self) -> int:
        return sum(1 for creative in self.creatives for card in creative.new.cards if not card.ok)


@dataclass(frozen=True)
class PreviewPage:
    generated_at: str
    state: str
    summary: Mapping[str, int]
    tasks: tuple[TaskView, ...]
    forecast: tuple[Mapping[str, Any], ...] | None
    drift: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())  # the plan's impact notes: why sizes or the forecast are missing

    @property
    def failures(self) -> int:
        return sum(task.failures for task in self.tasks)


def _diff_lines(diffs: Sequence[Mapping[str, Any]]) -> tuple[DiffLine, ...]:
    return tuple(
        DiffLine(
            d["path"],
            d["kind"],
            show_value(d["old"]) if "old" in d else None,
            show_value(d["new"]) if "new" in d else None,
        )
        for d in diffs
    )


def _sizes(change: Mapping[str, Any]) -> tuple[int | None, int | None, bool, str | None]:
    """(before, after, known, why unknown) from a task change's ``audience_size``: ``{before,
    after[, reason]}`` per the SPEC, or a bare number (after) from plans that carry only that."""
    size = change.get("audience_size")
    if isinstance(size, Mapping):
        return size.get("before"), size.get("after"), size.get("after") is not None, size.get("reason")
    if isinstance(size, int):
        return None, size, True, None
    return None, None, False, None


def _sms_fields(change: Mapping[str, Any]) -> tuple[tuple[str, dict[str, Any]], ...]:
    value = change.get("sms")
    if isinstance(value, Mapping):  # per creative
        if "segments" in value:
            return (("", dict(value)),)
        return tuple((str(key), dict(item)) for key, item in value.items() if isinstance(item, Mapping))
    if isinstance(value, list):
        return tuple((str(item.get("creative", "")), dict(item)) for item in value if isinstance(item, Mapping))
    return ()


def select_tasks(repository: Repository, wanted: Sequence[str]) -> list[str]:
    """``wanted`` (every task when empty), each checked; an unknown id is a UsageError with a hint."""
    if not wanted:
        return sorted(repository.tasks)
    for task_id in wanted:
        if task_id not in repository.tasks:
            hint = difflib.get_close_matches(task_id, list(repository.tasks), n=1)
            raise UsageError(
                f"no task {task_id!r} in the repository" + (f"; did you mean {hint[0]!r}?" if hint else "")
            )
    return list(dict.fromkeys(wanted))


def _testers(repository: Repository, task_id: str, explicit: Sequence[str]) -> list[str]:
    try:
        return choose_testers(repository, task_id, explicit)
    except UsageError:
        if explicit:
            raise
        return [EXAMPLES_TESTER]


class _Renderer:
    """Cards for (creative body, template body) pairs, for a set of testers."""

    def __init__(self, repository: Repository, known: Mapping[str, Mapping[str, Any]]) -> None:
        self.platform = repository.platform.model
        self.known = known

    def side(self, label: str, creative_id: str, creative: Mapping[str, Any], template: Mapping[str, Any], channel: str, testers: Sequence[str]) -> Side:
        cards = []
        for tester in testers:
            user, profile = tester_profile(tester, self.known, template)
            cards.append(render_card(creative_id, creative, template, channel, self.platform, tester, user, profile))
        return Side(label, tuple(cards))


def build_page(
    repository: Repository,
    store: StateStore,
    plan: Mapping[str, Any],
    tasks: Sequence[str] = (),
    testers: Sequence[str] = (),
    *,
    now: dt.datetime | None = None,
) -> PreviewPage:
    """The page for ``tasks`` (all when empty), testers from ``--tester`` or the task/site's."""
    chosen = select_tasks(repository, tasks)
    changes = {change["address"]: change for change in plan.get("changes", [])}
    per_task = {task_id: _testers(repository, task_id, testers) for task_id in chosen}
    everyone = list(dict.fromkeys(t for ids in per_task.values() for t in ids if t != EXAMPLES_TESTER))
    known = directory_attributes(repository, store, everyone) if everyone else {}
    if testers:
        for task_id in chosen:
            check_testers_known(repository, task_id, per_task[task_id], known)
    renderer = _Renderer(repository, known)
    stale = _stored_versions(store, changes, repository, chosen)

    views = []
    for task_id in chosen:
        resource = repository.task(task_id)
        data, model = resource.data, resource.model
        site = repository.platform.data["sites"][data["site"]]
        timezone = site["timezone"]
        change = changes.get(f"task.{task_id}", {"action": "no-op"})
        creatives = []
        for creative_id in data["creatives"]:
            body = repository.creatives[creative_id].data
            template = repository.templates[body["template"]].data
            new = renderer.side("new", creative_id, body, template, data["channel"], per_task[task_id])
            creative_change = changes.get(f"creative.{creative_id}", {"action": "no-op"})
            old = None
            if creative_id in stale:
                old_body, old_template = stale[creative_id]
                old = renderer.side("stored", creative_id, old_body, old_template, data["channel"], per_task[task_id])
            creatives.append(
                CreativeView(
                    creative_id, body.get("name", creative_id), body["template"], creative_change["action"], new, old,
                    _diff_lines(creative_change.get("diffs", [])),
                )
            )
        before, after, known_size, why = _sizes(change)
        status = change.get("status")
        views.append(
            TaskView(
                id=task_id,
                name=data["name"],
                campaign=resource.campaign or "",
                site=data["site"],
                site_name=site.get("name", data["site"]),
                mini_program=data.get("mini_program"),
                channel=data["channel"],
                status=data.get("status", "active"),
                testers=tuple(per_task[task_id]),
                creatives=tuple(creatives),
                calendar=task_calendar(model.schedule, timezone),
                action=change["action"],
                transition=f"{status['from'] or '(new)'} → {status['to']}" if status else None,
                audience_before=before,
                audience_after=after,
                audience_known=known_size,
                audience_reason=why,
                diffs=_diff_lines(change.get("diffs", [])),
                blockers=tuple((b["code"], b["message"]) for b in change.get("blockers", [])),
                warnings=tuple((w["code"], w["message"]) for w in change.get("warnings", [])),
                notes=tuple(change.get("notes", [])),
                sms=_sms_fields(change),
                sms_cost=change.get("sms_cost") if isinstance(change.get("sms_cost"), Mapping) else None,
            )
        )
    forecast = plan.get("forecast")
    drift = tuple(str(d.get("message") or d) for d in plan.get("drift", []) if d)
    return PreviewPage(
        generated_at=(now.isoformat(timespec="seconds") if now else plan.get("created_at", "")),
        state=str(plan.get("state", "")),
        summary=dict(plan.get("summary", {})),
        tasks=tuple(views),
        forecast=tuple(forecast) if isinstance(forecast, list) else None,
        drift=drift,
        notes=tuple(str(note) for note in plan.get("impact_notes", []) or []),
    )


def _stored_versions(
    store: StateStore, changes: Mapping[str, Mapping[str, Any]], repository: Repository, tasks: Sequence[str]
) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """creative id -> (stored body, its stored template) for the chosen tasks' creatives that the
    plan updates, directly or through their template."""
    ids = {c for task_id in tasks for c in repository.task(task_id).data["creatives"]}
    wanted = []
    for creative_id in sorted(ids):
        template_id = repository.creatives[creative_id].data["template"]
        if changes.get(f"creative.{creative_id}", {}).get("action") == "update" or changes.get(f"template.{template_id}", {}).get("action") == "update":
            wanted.append(creative_id)
    if not wanted:
        return {}
    creatives = store.resources([f"creative.{c}" for c in wanted])
    out = {}
    for creative_id in wanted:
        stored = creatives.get(f"creative.{creative_id}")
        if stored is None:
            continue
        body = dict(stored.body)
        template = store.resource(f"template.{body.get('template')}")
        current = repository.templates.get(body.get("template"))
        template_body = template.body if template is not None else (current.data if current is not None else None)
        if template_body is None:
            continue
        out[creative_id] = (body, dict(template_body))
    return out
