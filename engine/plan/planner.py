"""Compare a repository with the state and decide every change, status and blocker.

The lifecycle (design notes, "Task lifecycle"), for a task whose file is present:

- ``status: active``  -> ``running``. Needs a passing pilot test of exactly its current content
  (``needs-pilot-test``) unless it already ran with this very content (running, or paused and
  resumed unchanged), and every template of its creatives approved (``template-not-approved``).
- ``status: paused``  -> ``paused`` if it ever ran (running or paused); otherwise ``draft``, or
  ``testing`` once a pilot test of its content passed (a task already ``testing`` stays so while
  its content does not change).
- file deleted        -> ``completed``; the stored task and its history are kept, and a completed
  task whose file stays deleted is a no-op from then on.

Every change needs approval (``needs-approval``) unless the plan is made with evidence (apply).

The unchanged case is kept lean: digests of the desired bodies come from a per-file cache and are
compared with ``StateStore.resource_digests()``; deepdiff, stored bodies and schedule previews are
only touched for resources that change.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.config.repository import KINDS, Repository
from engine.plan.cache import DigestCache
from engine.plan.desired import Desired
from engine.plan.model import (
    NEEDS_APPROVAL,
    NEEDS_PILOT_TEST,
    TEMPLATE_NOT_APPROVED,
    Blocker,
    Change,
    FieldDiff,
    OccurrenceView,
    Plan,
    SchedulePreview,
    StatusChange,
)

if TYPE_CHECKING:
    from engine.state import StateStore, TaskState

PREVIEW_COUNT = 5
_KIND_ORDER = {kind: index for index, kind in enumerate(KINDS)}

APPROVAL_MESSAGE = (
    "every change needs approval: apply from the merged pull request's workflow "
    "(GITHUB_EVENT_PATH or --event FILE), or with --approved-by NAME --reason TEXT"
)


@dataclass
class StateSnapshot:
    """What the planner reads from the state, read once."""

    lineage: str
    serial: int
    digests: dict[str, str]
    task_states: dict[str, TaskState]
    passing: dict[str, set[str]]
    display: str

    @classmethod
    def read(cls, store: StateStore) -> StateSnapshot:
        meta = store.meta()
        return cls(
            lineage=meta.lineage,
            serial=meta.serial,
            digests=store.resource_digests(),
            task_states=store.task_states(),
            passing=store.passing_pilot_digests(),
            display=store.display_url,
        )


def _split(address: str) -> tuple[str, str]:
    if address == "platform":
        return "platform", "platform"
    kind, _, rid = address.partition(".")
    return kind, rid


def _order(change: Change) -> tuple[int, str]:
    return _KIND_ORDER.get(change.kind, len(_KIND_ORDER)), change.id


def target_status(want: str, before: str | None, content_changed: bool, tested: bool) -> str:
    """The status a task present in the repository ends in (see the module docstring)."""
    if want == "active":
        return "running"
    if before in ("running", "paused"):
        return "paused"
    if before == "testing" and not content_changed:
        return "testing"
    return "testing" if tested else "draft"


def needs_test(want: str, before: str | None, content_changed: bool) -> bool:
    """Whether reaching the target needs a passing pilot test of the current content."""
    return want == "active" and not (before in ("running", "paused") and not content_changed)


class Planner:
    """Builds one plan. Holds the desired state so ``apply`` can store exactly what was planned."""

    def __init__(
        self,
        desired: Desired,
        snapshot: StateSnapshot,
        *,
        stored_bodies: Callable[[list[str]], dict[str, dict[str, Any]]] | None = None,
        audience_size: Callable[[dict[str, Any], dict[str, dict[str, Any]]], int | None] | None = None,
        now: dt.datetime | None = None,
        approved: bool = False,
        previews: bool = True,
    ) -> None:
        self.desired = desired
        self.snapshot = snapshot
        self.stored_bodies = stored_bodies
        self.audience_size = audience_size
        self.now = now or dt.datetime.now(dt.timezone.utc)
        self.approved = approved
        self.previews = previews

    # -- the plan --------------------------------------------------------------------------

    def plan(self) -> Plan:
        desired, snapshot = self.desired, self.snapshot
        digests = desired.digests
        stored = snapshot.digests
        changes: dict[str, Change] = {}
        changed: set[str] = set()
        for address, digest in digests.items():
            before = stored.get(address)
            kind, rid = _split(address)
            if before is None:
                action = "create"
            elif before != digest:
                action = "update"
            else:
                action = "no-op"
            if action != "no-op":
                changed.add(address)
            changes[address] = Change(address, kind, rid, action, before_digest=before, after_digest=digest)

        for address in stored.keys() - digests.keys():
            kind, rid = _split(address)
            change = Change(address, kind, rid, "delete", before_digest=stored[address])
            if kind == "task":
                state = snapshot.task_states.get(rid)
                if state is not None and state.status == "completed":
                    change.action = "no-op"
                    change.after_digest = stored[address]
                    change.status = StatusChange("completed", "completed")
                else:
                    change.status = StatusChange(state.status if state else None, "completed")
                    change.content_digest = state.content_digest if state else None
                    change.notes.append("the task file was deleted: the task is completed and kept in the state")
            changes[address] = change

        for task_id in desired.task_ids:
            self._task(changes[f"task.{task_id}"], task_id, changed)

        actionable = [change for change in changes.values() if change.is_change]
        if actionable:
            self._details(actionable)
        ordered = sorted(changes.values(), key=_order)
        return Plan(
            lineage=snapshot.lineage,
            serial=snapshot.serial,
            repository_digest=desired.repository.digest,
            created_at=self.now.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
            state=snapshot.display,
            changes=ordered,
            approved=self.approved,
        )

    def _task(self, change: Change, task_id: str, changed: set[str]) -> None:
        desired, snapshot = self.desired, self.snapshot
        previous = snapshot.task_states.get(task_id)
        before = previous.status if previous is not None else None
        want = desired.resources[change.address].data.get("status", "active")
        components = desired.task_components(task_id)
        moved = [address for address in components if address in changed]
        if previous is not None and before != "completed" and not moved:
            content_changed = False  # nothing it is made of changed since the last apply
            content = previous.content_digest
        else:
            content = desired.task_content_digest(task_id)
            content_changed = previous is None or previous.content_digest != content
        testing_needed = needs_test(want, before, content_changed)
        if want == "paused":  # draft or testing depends on a pilot test, unless it ran or stays testing
            check = before not in ("running", "paused") and not (before == "testing" and not content_changed)
        else:
            check = testing_needed
        tested = False
        if check:
            content = desired.task_content_digest(task_id)
            tested = content in snapshot.passing.get(task_id, ())
        after = target_status(want, before, content_changed, tested)
        status = StatusChange(before, after)
        if change.action == "no-op" and not status.changes and not content_changed:
            change.status = status
            return
        if change.action == "no-op":
            change.action = "update"
        change.status = status
        change.content_digest = content if content is not None else desired.task_content_digest(task_id)
        if content_changed and moved and change.address not in moved:
            change.notes.append("its content changes with " + ", ".join(moved))
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

    def _details(self, actionable: list[Change]) -> None:
        desired = self.desired
        updated = [c.address for c in actionable if c.action == "update" and c.before_digest != c.after_digest]
        old_bodies = self.stored_bodies(updated) if (updated and self.stored_bodies) else {}
        audiences: dict[str, dict[str, Any]] | None = None
        for change in actionable:
            if change.action in ("create", "update"):
                change.body = desired.body(change.address)
                if change.kind == "audience":
                    attachment = change.body.get("csv_digest")
                    if attachment:
                        change.attachments = [{"digest": attachment, "path": change.body["csv_path"]}]
            if change.address in old_bodies:
                change.diffs = field_diffs(old_bodies[change.address], change.body)
            if not self.approved:
                change.blockers.append(Blocker(NEEDS_APPROVAL, APPROVAL_MESSAGE))
            if change.kind == "task" and change.action != "delete" and self.previews:
                change.schedule = self._preview(change.id)
                if self.audience_size is not None:
                    if audiences is None:
                        audiences = {rid: desired.body(f"audience.{rid}") for rid in desired.repository.audiences}
                    change.audience_size = self.audience_size(change.body or desired.body(change.address), audiences)

    def _preview(self, task_id: str) -> SchedulePreview:
        from engine.config.models import Schedule
        from engine.schedule.occurrences import preview

        resource = self.desired.resources[f"task.{task_id}"]
        timezone = self.desired.site_timezone(task_id)
        found = preview(Schedule.model_validate(resource.data["schedule"]), timezone, self.now, PREVIEW_COUNT)
        return SchedulePreview(
            timezone,
            tuple(OccurrenceView(o.key, o.start.isoformat(), o.finish.isoformat()) for o in found.upcoming),
            found.total,
        )


# -- field-level differences -------------------------------------------------------------------


def format_path(steps: list[Any]) -> str:
    """``['schedule', 'windows', 0, 'start']`` -> ``schedule.windows[0].start``."""
    out = ""
    for step in steps:
        if isinstance(step, int):
            out += f"[{step}]"
        else:
            out += ("." if out else "") + str(step)
    return out or "(whole)"


def field_diffs(old: dict[str, Any], new: dict[str, Any] | None) -> list[FieldDiff]:
    """Field-level differences between two bodies (deepdiff, imported only when something changed)."""
    from deepdiff import DeepDiff
    from deepdiff.helper import NotPresent

    if new is None:
        return []
    found: list[FieldDiff] = []
    tree = DeepDiff(old, new, view="tree", ignore_order=False)
    for report, levels in tree.items():
        for level in levels:
            path = format_path(level.path(output_format="list"))
            old_value = None if isinstance(level.t1, NotPresent) else level.t1
            new_value = None if isinstance(level.t2, NotPresent) else level.t2
            if isinstance(level.t1, NotPresent):
                found.append(FieldDiff(path, "added", None, new_value))
            elif isinstance(level.t2, NotPresent):
                found.append(FieldDiff(path, "removed", old_value, None))
            else:
                found.append(FieldDiff(path, "changed", old_value, new_value))
    found.sort(key=lambda d: d.path)
    return found


# -- the entry point -----------------------------------------------------------------------------


def audience_size_function(store: StateStore) -> Callable[[dict[str, Any], dict[str, dict[str, Any]]], int | None] | None:
    """The user-directory helper's ``audience_size``, bound to the store, when it is installed."""
    try:
        from engine.delivery.audiences import audience_size  # type: ignore[import-not-found]
    except ImportError:
        return None
    from engine.errors import CampaignsError

    def size(task: dict[str, Any], audiences: dict[str, dict[str, Any]]) -> int | None:
        try:
            return audience_size(store, task, audiences)
        except CampaignsError:
            return None

    return size


def make_planner(
    repository: Repository,
    store: StateStore,
    *,
    now: dt.datetime | None = None,
    approved: bool = False,
    use_cache: bool = True,
    previews: bool = True,
) -> Planner:
    """A Planner for this repository and state (reads the state once)."""
    cache = DigestCache.load(repository.root if use_cache else None)
    desired = Desired(repository, cache)
    snapshot = StateSnapshot.read(store)

    def stored_bodies(addresses: list[str]) -> dict[str, dict[str, Any]]:
        return {address: stored.body for address, stored in store.resources(addresses).items()}

    return Planner(
        desired,
        snapshot,
        stored_bodies=stored_bodies,
        audience_size=audience_size_function(store) if previews else None,
        now=now,
        approved=approved,
        previews=previews,
    )


def compute_plan(
    repository: Repository,
    store: StateStore,
    *,
    now: dt.datetime | None = None,
    approved: bool = False,
    use_cache: bool = True,
) -> Plan:
    """The plan that brings ``store`` to the desired state of ``repository``."""
    planner = make_planner(repository, store, now=now, approved=approved, use_cache=use_cache)
    plan = planner.plan()
    planner.desired.cache.save()
    return plan
