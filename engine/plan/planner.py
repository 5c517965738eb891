"""Compare a repository with the state and decide every change, status and blocker.

The lifecycle rules (the status a task ends in, when it needs a pilot test) are
``engine.plan.lifecycle``; a deleted task file completes the task (the stored task and its history
are kept, and a completed task whose file stays deleted is a no-op from then on).

Every change needs approval (``needs-approval``) unless the plan is made with evidence (apply).

The unchanged case is kept lean: digests of the desired bodies come from a per-file cache and are
compared with ``StateStore.resource_digests()``; deepdiff, stored bodies and schedule previews are
only touched for resources that change.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from engine.clock import now as clock_now
from engine.config.models import Schedule
from engine.config.repository import Repository
from engine.config.usercsv import CsvFile
from engine.delivery.attribute_gaps import MISSING_ATTRIBUTE, AttributeGap
from engine.plan import fastpath, impact, impact_query, lifecycle
from engine.plan.cache import DigestCache
from engine.plan.desired import Desired
from engine.plan.impact import DEFAULT_FORECAST_DAYS
from engine.plan.model import (
    NEEDS_APPROVAL,
    NEEDS_PILOT_TEST,
    TEMPLATE_NOT_APPROVED,
    Blocker,
    ChangeDraft,
    OccurrenceView,
    Plan,
    PlanWarning,
    SchedulePreview,
    StatusChange,
    change_order,
)
from engine.plan.source import AUDIENCE_SIZE_LIMIT, LocalSource, SizeRequest, StateSnapshot, StateSource
from engine.schedule.occurrences import preview
from engine.state.records import utc_iso
from engine.templating import creative_texts, required_attributes

if TYPE_CHECKING:
    from engine.state import StateStore

PREVIEW_COUNT = 5

APPROVAL_MESSAGE = (
    "every change needs approval: apply from the merged pull request's workflow "
    "(GITHUB_EVENT_PATH or --event FILE), or with --approved-by NAME --reason TEXT"
)


def _split(address: str) -> tuple[str, str]:
    if address == "platform":
        return "platform", "platform"
    kind, _, rid = address.partition(".")
    return kind, rid


class Planner:
    """Builds one plan. Holds the desired state so ``apply`` can store exactly what was planned."""

    def __init__(
        self,
        desired: Desired,
        snapshot: StateSnapshot,
        source: StateSource | None = None,
        *,
        now: dt.datetime | None = None,
        approved: bool = False,
        previews: bool = True,
        forecast_days: int = DEFAULT_FORECAST_DAYS,
    ) -> None:
        self.forecast_days = forecast_days  # site-local days of the cap forecast (0: none)
        self.forecast: list[dict] = []
        self.impact_notes: list[str] = []
        self.desired = desired
        self.snapshot = snapshot
        self.source = source
        self.now = now or clock_now()  # the instant the plan is made: its created_at and previews
        self.approved = approved
        self.previews = previews

    # -- the plan --------------------------------------------------------------------------

    def plan(self) -> Plan:
        desired, snapshot = self.desired, self.snapshot
        digests = desired.digests
        stored = snapshot.digests
        states = snapshot.task_states
        actionable: dict[str, ChangeDraft] = {}
        unchanged: dict[str, str] = {}  # address -> digest
        for address, digest in digests.items():
            before = stored.get(address)
            if before == digest:
                unchanged[address] = digest
                continue
            kind, rid = _split(address)
            action = "create" if before is None else "update"
            actionable[address] = ChangeDraft(address, kind, rid, action, before_digest=before, after_digest=digest)
        changed = set(actionable)
        statuses: dict[str, StatusChange] = {}  # tasks that stay as they are: address -> no-op status
        for address in stored.keys() - digests.keys():
            kind, rid = _split(address)
            state = states.get(rid) if kind == "task" else None
            if state is not None and state.status == lifecycle.COMPLETED:
                unchanged[address] = stored[address]
                statuses[address] = StatusChange(lifecycle.COMPLETED, lifecycle.COMPLETED)
                continue
            change = ChangeDraft(address, kind, rid, "delete", before_digest=stored[address])
            if kind == "task":
                change.status = StatusChange(state.status if state else None, lifecycle.COMPLETED)
                change.content_digest = state.content_digest if state else None
                change.notes.append("the task file was deleted: the task is completed and kept in the state")
            actionable[address] = change

        self._tasks(actionable, unchanged, statuses, changed)

        ordered = sorted(actionable.values(), key=change_order)
        if ordered:
            self._details(ordered, self._running(actionable, statuses))
        noops = [(address, digest, statuses.get(address)) for address, digest in unchanged.items()]
        return Plan(
            lineage=snapshot.lineage,
            serial=snapshot.serial,
            repository_digest=desired.repository.digest,
            created_at=utc_iso(self.now),
            state=snapshot.display,
            changes=[change.freeze() for change in ordered],
            approved=self.approved,
            noops=noops,
            drift=snapshot.drift,
            forecast=self.forecast,
            impact_notes=self.impact_notes,
        )

    def _running(self, actionable: dict[str, ChangeDraft], statuses: dict[str, StatusChange]) -> set[str]:
        """Tasks running after this plan (running, or planned to run), less emergency pauses."""
        held = {entry.get("task") for entry in self.snapshot.drift if entry.get("kind") == "emergency-pause"}
        running = {address[5:] for address, status in statuses.items() if address.startswith("task.") and status.after == "running"}
        for change in actionable.values():
            if change.kind == "task" and change.status is not None and change.status.after == "running":
                running.add(change.id)
        return {task for task in running if task not in held and task in self.desired.repository.tasks}

    def _tasks(
        self,
        actionable: dict[str, ChangeDraft],
        unchanged: dict[str, str],
        statuses: dict[str, StatusChange],
        changed: set[str],
    ) -> None:
        """Every task's status; settled tasks nothing of which changed are decided here, quickly."""
        states = self.snapshot.task_states
        creatives = self.desired.repository.creatives
        changed_creatives = {address[9:] for address in changed if address.startswith("creative.")}
        changed_templates = {address[9:] for address in changed if address.startswith("template.")}
        shared: dict[str, StatusChange] = {}
        for task_id, resource in self.desired.repository.tasks.items():
            address = "task." + task_id
            change = actionable.get(address)
            previous = states.get(task_id)
            if change is None and previous is not None:
                status = previous.status
                data = resource.data
                if (
                    lifecycle.settled(data.get("status", "active"), status)
                    and not (changed_creatives and any(c in changed_creatives for c in data["creatives"]))
                    and not (
                        changed_templates
                        and any(creatives[c].data["template"] in changed_templates for c in data["creatives"])
                    )
                ):
                    same = shared.get(status)
                    if same is None:
                        same = shared[status] = StatusChange(status, status)
                    statuses[address] = same
                    continue
            if change is None:
                digest = unchanged[address]
                change = ChangeDraft(address, "task", task_id, "no-op", before_digest=digest, after_digest=digest)
            self._task(change, task_id, changed)
            if change.is_change:
                actionable[address] = change
                unchanged.pop(address, None)
            else:
                statuses[address] = change.status

    def _task(self, change: ChangeDraft, task_id: str, changed: set[str]) -> None:
        desired, snapshot = self.desired, self.snapshot
        previous = snapshot.task_states.get(task_id)
        before = previous.status if previous is not None else None
        want = desired.resources[change.address].data.get("status", "active")
        components = desired.task_components(task_id)
        moved = [address for address in components if address in changed]
        if previous is not None and before != lifecycle.COMPLETED and not moved:
            content_changed = False  # nothing it is made of changed since the last apply
            content = previous.content_digest
        else:
            content = desired.task_content_digest(task_id)
            content_changed = previous is None or previous.content_digest != content
        testing_needed = lifecycle.needs_test(want, before, content_changed)
        tested = False
        if lifecycle.pilot_test_matters(want, before, content_changed):
            content = desired.task_content_digest(task_id)
            tested = content in snapshot.passing.get(task_id, ())
        after = lifecycle.target_status(want, before, content_changed, tested)
        status = StatusChange(before, after)
        if change.action == "no-op" and not status.changes and not content_changed:
            change.status = status
            return
        if change.action == "no-op":
            change.action = "update"
        change.status = status
        change.content_digest = content if content is not None else desired.task_content_digest(task_id)
        others = [address for address in moved if address != change.address]
        if content_changed and others:
            change.notes.append("its content changes with " + ", ".join(others))
        if testing_needed and not tested:
            change.blockers.append(
                Blocker(
                    NEEDS_PILOT_TEST,
                    f"no passing pilot test of this content (digest {change.content_digest[:12]}); "
                    f"run `campaigns test {task_id}`",
                )
            )
        if after == "running":
            for creative_id in desired.task_creatives(task_id):
                template_id = desired.resources[f"creative.{creative_id}"].data["template"]
                template_status = desired.resources[f"template.{template_id}"].data["status"]
                if template_status != "approved":
                    change.blockers.append(
                        Blocker(
                            TEMPLATE_NOT_APPROVED,
                            f"creative {creative_id!r} uses template {template_id!r}, which is {template_status}",
                        )
                    )

    # -- details of the changes only -------------------------------------------------------

    def _details(self, actionable: list[ChangeDraft], running: set[str]) -> None:
        desired = self.desired
        updated: dict[str, dict] = {}
        tasks: dict[str, dict] = {}
        for change in actionable:
            if change.action in ("create", "update"):
                change.body = desired.body(change.address)
                if change.kind == "audience":
                    attachment = change.body.get("csv_digest")
                    if attachment:
                        change.attachments = [{"digest": attachment, "path": change.body["csv_path"]}]
                if change.action == "update" and change.before_digest != change.after_digest:
                    updated[change.address] = change.body
                if change.kind == "task" and self.previews:
                    tasks[change.id] = change.body
            if not self.approved:
                change.blockers.append(Blocker(NEEDS_APPROVAL, APPROVAL_MESSAGE))
        answer = None
        request = None
        if self.previews:  # what the change will do: for people (apply plans without it)
            # without a directory there is nothing to count: no schedule is expanded for the forecast
            directory = self.snapshot.attributes is not None or bool(desired.repository.platform.data.get("user_directory"))
            forecast = impact.plan_forecast(desired, running, self.now, self.forecast_days if directory else 0)
            if not directory and self.forecast_days:
                self.impact_notes.append(impact.NO_FORECAST)
            impact_request = impact.build_request(actionable, forecast, desired, running)
            extra = [c.id for c in actionable if c.kind == "audience" and c.action != "delete"]
            extra += [rid for task in impact_request.forecast_tasks for rid in desired.repository.tasks[task].data.get("audiences", [])]
            request = size_request(desired, tasks, extra)
            request.impact = impact_request
        if self.source is not None and (updated or request is not None):
            answer = self.source.submit_details(updated, request)
        if self.previews:
            for change in actionable:
                if change.kind == "task" and change.action != "delete":
                    change.schedule = self._preview(change.id)
        if answer is None:
            if request is not None:
                self.forecast, notes = impact.apply_answer(actionable, None, forecast, desired, running)
                self.impact_notes.extend(notes)
            return
        diffs, counted = answer()
        for change in actionable:
            if change.address in diffs:
                change.diffs = diffs[change.address]
        if request is not None:
            found = counted if isinstance(counted, impact_query.ImpactAnswer) else None
            limit = f"not counted: a plan counts the audiences of at most {AUDIENCE_SIZE_LIMIT} changed tasks"
            self.forecast, notes = impact.apply_answer(actionable, found, forecast, desired, running, limit_reason=limit)
            self.impact_notes.extend(notes)
        if request is not None and request.required:
            self._attribute_warnings(actionable, self.source.attribute_gaps(request))

    def _attribute_warnings(self, actionable: list[ChangeDraft], gaps: dict[str, list]) -> None:
        """``missing-attribute``: members of a task's audiences lack what its creatives print."""
        for change in actionable:
            if change.kind != "task" or change.id not in gaps:
                continue
            users = required_by(self.desired, change.id)
            for wire in gaps[change.id]:
                gap = AttributeGap.from_wire(wire)
                change.warnings.append(PlanWarning(MISSING_ATTRIBUTE, gap.describe(users.get(gap.attribute, ()))))

    def _preview(self, task_id: str) -> SchedulePreview:
        resource = self.desired.resources[f"task.{task_id}"]
        timezone = self.desired.repository.site_timezone(task_id)
        found = preview(Schedule.model_validate(resource.data["schedule"]), timezone, self.now, PREVIEW_COUNT)
        return SchedulePreview(
            timezone,
            tuple(OccurrenceView(o.key, o.start.isoformat(), o.finish.isoformat()) for o in found.upcoming),
            found.total,
        )


# -- what the state side is asked about tasks (also used by `campaigns test`) ------------------


def required_by(desired: Desired, task_id: str) -> dict[str, list[str]]:
    """attribute -> the task's creatives that need it (print it without a default)."""
    found: dict[str, list[str]] = {}
    for creative_id in desired.task_creatives(task_id):
        for name in required_attributes(creative_texts(desired.repository.creatives[creative_id].data)):
            found.setdefault(name, []).append(creative_id)
    return found


def size_request(desired: Desired, tasks: dict[str, dict], also: list[str] | None = None) -> SizeRequest:
    """What counting these tasks' audiences needs: the audiences they name, those included or
    excluded by them (recursively), the CSV contents of those, and the attributes the tasks'
    creatives need (for ``missing-attribute``)."""
    known = desired.repository.audiences
    wanted: list[str] = []
    seen: set[str] = set()
    stack = [rid for body in list(tasks.values())[:AUDIENCE_SIZE_LIMIT] for rid in body.get("audiences", [])]
    stack.extend(also or ())
    while stack:
        rid = stack.pop()
        if rid in seen or rid not in known:
            continue
        seen.add(rid)
        wanted.append(rid)
        source = known[rid].data.get("source") or {}
        stack.extend(source.get("include") or [])
        stack.extend(source.get("exclude") or [])
    attachments: dict[str, bytes | CsvFile] = {}
    for rid in wanted:
        found = desired.attachment_file(f"audience.{rid}")  # streamed when sized, never read whole
        if found is not None:
            attachments[found[0]] = found[2]
    counted = dict(list(tasks.items())[:AUDIENCE_SIZE_LIMIT])
    return SizeRequest(
        platform=desired.repository.platform.data,
        base_dir=str(desired.root),
        tasks=counted,
        audiences={rid: desired.body(f"audience.{rid}") for rid in wanted},
        attachments=attachments,
        required={task_id: names for task_id in counted if (names := list(required_by(desired, task_id)))},
    )


# -- the entry point -----------------------------------------------------------------------------


def make_planner(
    repository: Repository,
    source: StateSource,
    *,
    now: dt.datetime | None = None,
    approved: bool = False,
    use_cache: bool = True,
    previews: bool = True,
    forecast_days: int = DEFAULT_FORECAST_DAYS,
) -> Planner:
    """A Planner for this repository and state (reads the state's snapshot once).

    ``use_cache=False`` reads no remembered digest, and stores the ones it computes."""
    cache = DigestCache.load(repository.root, read=use_cache)
    return Planner(
        Desired(repository, cache), source.snapshot(), source,
        now=now, approved=approved, previews=previews, forecast_days=forecast_days,
    )


def compute_plan(
    repository: Repository,
    store: StateStore | StateSource,
    *,
    now: dt.datetime | None = None,
    approved: bool = False,
    use_cache: bool = True,
    forecast_days: int = DEFAULT_FORECAST_DAYS,
) -> Plan:
    """The plan that brings the state (a store, or a StateSource) to the desired state of ``repository``.

    A plan that finds nothing to do remembers the repository for ``engine.plan.fastpath``.
    """
    source = store if hasattr(store, "snapshot") else LocalSource(store)
    planner = make_planner(repository, source, now=now, approved=approved, use_cache=use_cache, forecast_days=forecast_days)
    plan = planner.plan()
    planner.desired.cache.save()
    if not plan.has_changes:
        fastpath.remember(planner.desired, planner.snapshot)
    return plan
