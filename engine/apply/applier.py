"""Apply: bring the state to the repository's desired state, all or nothing, under the lock.

Under the state lock the plan is computed again against the state as it is now. A saved plan
is applied only if it still describes exactly that: same lineage and serial, same repository
content, same changes; otherwise it is stale and refused. Blockers (pilot tests, templates,
approval evidence) are checked on the fresh plan, so a pilot test recorded after planning counts.

Everything is written in one ``StateStore.transaction`` (resources, deletions, task statuses,
CSV attachments, the history entry with the approval); a refusal or a crash writes nothing.

Test-only hook: ``CAMPAIGNS_TEST_APPLY_SLEEP=<seconds>`` makes apply print a line on stderr and
sleep inside its transaction after all writes, so tests can kill it mid-transaction.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from engine.apply.approval import ApprovalRefused, Evidence, stored_policy
from engine.clock import Clock
from engine.config.settings import resolve_state_url
from engine.errors import CampaignsError
from engine.plan import fastpath, planfile
from engine.plan.model import NEEDS_APPROVAL, Blocker, Change, Plan
from engine.plan.planner import APPROVAL_MESSAGE, Planner, make_planner
from engine.plan.source import LocalSource
from engine.state import StateStore, control
from engine.state.records import Approval, TaskStateWrite
from engine.validation.filecheck import gc_paused
from engine.validation.pipeline import load_repository

if TYPE_CHECKING:
    from pathlib import Path

    from engine.config.repository import Repository

TEST_SLEEP_ENV = "CAMPAIGNS_TEST_APPLY_SLEEP"


class StalePlan(CampaignsError):
    """The saved plan no longer describes what apply would do."""


class ApplyRefused(CampaignsError):
    """Blockers stop the apply; ``details`` names every blocker and every change it concerns."""

    def __init__(self, message: str, details: list[str]) -> None:
        super().__init__(message)
        self.details = details


@dataclass
class ApplyResult:
    plan: Plan
    serial: int  # the state's serial after the apply (unchanged when nothing was applied)
    applied: bool
    approval: Approval | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def message(self) -> str:
        if not self.applied:
            return f"No changes. The state (serial {self.serial}) already matches the repository; nothing to approve."
        c = self.counts
        return (
            f"Apply complete! {c.get('create', 0)} created, {c.get('update', 0)} updated, "
            f"{c.get('delete', 0)} deleted; serial {self.serial}."
        )


def check_saved(saved: Plan, fresh: Plan) -> None:
    """Refuse a saved plan that the state or the repository has moved on from. A plan made
    before the state existed (lineage None) holds for the state this apply creates (serial 0)."""
    if saved.lineage is None:
        if fresh.serial != 0:
            raise StalePlan(
                "the plan was made before the state existed, and the state has been applied to since "
                f"(serial {fresh.serial}); make a new plan"
            )
    elif saved.lineage != fresh.lineage:
        raise StalePlan(
            f"the plan was made against another state (lineage {saved.lineage}, this state is {fresh.lineage}); "
            "make a new plan"
        )
    if saved.serial != fresh.serial:
        raise StalePlan(
            f"the plan is stale: it was made at state serial {saved.serial}, and the state is now at serial "
            f"{fresh.serial} (another apply ran since); make a new plan"
        )
    if saved.repository_digest != fresh.repository_digest:
        raise StalePlan(
            "the plan is stale: the repository's content changed since it was made "
            f"({saved.repository_digest[:12]} then, {fresh.repository_digest[:12]} now); make a new plan"
        )
    if saved.fingerprint() != fresh.fingerprint():
        ours, theirs = set(saved.fingerprint()), set(fresh.fingerprint())
        differing = sorted({item[0] for item in ours ^ theirs})
        raise StalePlan(
            "the plan no longer matches what apply would do ("
            + ", ".join(differing[:5])
            + (f" and {len(differing) - 5} more" if len(differing) > 5 else "")
            + "); make a new plan"
        )


def refusal(plan: Plan, evidence_problem: str | None) -> ApplyRefused:
    """One error naming every blocker, with a detail line per blocker and change."""
    details: list[str] = []
    if evidence_problem:
        details.append(f"approval: {evidence_problem}")
    blocked = plan.blockers()
    for code, changes in blocked.items():
        if code == NEEDS_APPROVAL:
            details.append(
                f"{code}: {len(changes)} change{'s' if len(changes) != 1 else ''} "
                f"({', '.join(c.address for c in changes[:10])}{' …' if len(changes) > 10 else ''}) need approval"
            )
            continue
        for change in changes:
            for blocker in change.blockers:
                if blocker.code == code:
                    details.append(f"{code}: {change.address}: {blocker.message}")
    codes = [code for code in blocked if code != NEEDS_APPROVAL]
    tasks = sorted({c.address for code in codes for c in blocked[code]})
    parts = []
    if evidence_problem:
        parts.append(f"no approval ({evidence_problem})")
    elif NEEDS_APPROVAL in blocked:
        parts.append(
            "no approval evidence (apply from the merged pull request's workflow, GITHUB_EVENT_PATH or "
            "--event FILE, or pass --approved-by NAME --reason TEXT)"
        )
    for code in codes:
        names = [c.address for c in blocked[code]]
        parts.append(f"{code} on {', '.join(names[:8])}{f' and {len(names) - 8} more' if len(names) > 8 else ''}")
    message = "apply refused, nothing was changed: " + "; ".join(parts)
    if tasks and len(tasks) > 8:
        message += f" ({len(tasks)} tasks in all)"
    return ApplyRefused(message, details)


def _test_hook(serial: int) -> None:
    seconds = os.environ.get(TEST_SLEEP_ENV)
    if not seconds:
        return
    print(f"campaigns: test hook: sleeping {seconds}s inside the apply transaction (serial {serial})", file=sys.stderr, flush=True)
    time.sleep(float(seconds))


def write(
    planner: Planner, plan: Plan, store: StateStore, approval: Approval | None, now: dt.datetime | None = None
) -> int:
    """Write every change of ``plan`` in one transaction (dated ``now``: the history's
    ``applied_at``, the ``since`` of every status it changes); returns the new serial."""
    desired = planner.desired
    changes = plan.actionable
    versions = []
    deletes: list[str] = []
    task_states: list[TaskStateWrite] = []
    attachments: list[tuple[str, str, bytes]] = []
    for change in changes:
        if change.action in ("create", "update") and change.before_digest != change.after_digest:
            versions.append(desired.version(change.address))
            if change.attachments:
                found = desired.attachment(change.address)
                if found is None or found[0] != change.attachments[0]["digest"]:
                    raise StalePlan(f"{change.address}: its CSV file changed while applying; make a new plan")
                attachments.append(found)
        if change.action == "delete" and change.kind != "task":
            deletes.append(change.address)
        if change.kind == "task" and change.status is not None:
            task_states.append(TaskStateWrite(change.id, change.status.after, change.content_digest))
    counts = plan.summary()
    summary = {
        "create": counts["create"],
        "update": counts["update"],
        "delete": counts["delete"],
        "repository_digest": plan.repository_digest,
        "statuses": _status_counts(changes),
    }
    assert plan.lineage is not None, "apply writes a plan made against the state it opened"
    with store.transaction(plan.lineage, plan.serial, now=now) as tx:
        if versions:
            tx.put_resources(versions)
        if deletes:
            tx.delete_resources(deletes)
        if task_states:
            tx.set_task_states(task_states)
        if attachments:
            tx.put_attachments(attachments)
        tx.append_history(approval=approval, summary=summary, changes=[c.summary_json() for c in changes])
        control.clear_apply_failures(tx.connection)  # the state caught up with the repository
        serial = tx.serial
        _test_hook(serial)
    return serial


def _status_counts(changes: list[Change]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for change in changes:
        if change.status is not None and change.status.changes:
            counts[change.status.after] = counts.get(change.status.after, 0) + 1
    return counts


def apply(
    repository: Repository,
    store: StateStore,
    *,
    evidence: Evidence,
    saved: Plan | None = None,
    lock_timeout: float = 0,
    clock: Clock | None = None,
    on_locked: Callable[[], None] | None = None,
) -> ApplyResult:
    """Apply the repository (or the saved plan of it) to the state. Raises StalePlan, ApplyRefused,
    ApprovalRefused, StateLocked; none of them leaves anything written.

    Reads no cache (a pull request's checkout is no place to trust one): every digest is computed
    from the repository. ``clock`` (default: the store's) is read once: the plan, the history
    entry and every status change are dated with that instant.

    The applied repository is remembered for ``engine.plan.fastpath``. Approval is judged by the
    policy already applied in the state, read under the lock (``approval.stored_policy``), never
    by the repository's own ``platform.yaml``: a change to the policy governs the merges after it."""
    with store.lock("apply", timeout=lock_timeout):
        if on_locked:
            on_locked()
        now = (clock or store.clock).now()
        planner = make_planner(repository, LocalSource(store), now=now, approved=True, use_cache=False, previews=False)
        plan = planner.plan()
        planner.desired.cache.save()
        if saved is not None:
            check_saved(saved, plan)
        if not plan.has_changes:
            if any(entry.get("kind") == "apply-failed" for entry in planner.snapshot.drift):
                with store.writing() as conn:  # the state matches the repository: nothing is ahead of it
                    control.clear_apply_failures(conn)
            fastpath.remember(planner.desired, planner.snapshot)
            return ApplyResult(plan, plan.serial, applied=False)
        problem = None
        approval = None
        try:
            approval = evidence.resolve(stored_policy(store))
        except ApprovalRefused as refused:
            problem = str(refused)
        if approval is None:
            plan = plan.with_blocker(Blocker(NEEDS_APPROVAL, APPROVAL_MESSAGE))
        if plan.blockers() or problem:
            refused = refusal(plan, problem)
            _remember_failure(store, evidence, approval, refused, now, plan.serial)
            raise refused
        serial = write(planner, plan, store, approval, now)
        fastpath.remember(planner.desired, planner.snapshot)
        counts = plan.summary()
        return ApplyResult(plan, serial, applied=True, approval=approval, counts=counts)


def apply_repository(
    repo: Path,
    state_url: str | None = None,
    *,
    evidence: Evidence,
    plan_file: Path | None = None,
    lock_timeout: float = 0,
) -> ApplyResult:
    """The whole of ``campaigns apply``: the saved plan read first (a bad file is refused before
    anything else is read), the repository validated without any cache, then ``apply`` against
    the state the repository names (``state_url``: ``--state``). Raises what ``apply`` raises,
    PlanFileError and InvalidRepository."""
    saved = planfile.load(plan_file) if plan_file is not None else None
    with gc_paused():  # builds many objects and no cycles worth collecting
        repository = load_repository(repo, state=state_url, use_cache=False)  # apply trusts no cache
        url = resolve_state_url(repo, state_url, platform=repository.platform.data)
        with StateStore.open(url, base_dir=repo) as store:
            return apply(repository, store, evidence=evidence, saved=saved, lock_timeout=lock_timeout)


def _remember_failure(
    store: StateStore, evidence: Evidence, approval: Approval | None, refused: ApplyRefused, now: dt.datetime, serial: int
) -> None:
    """An apply with approval evidence was refused: the repository is now ahead of the state, and
    every plan says so (``engine.plan.drift``) until an apply succeeds. Without evidence it was
    only a try (a person's local apply), not a merge left unapplied."""
    if approval is None and not evidence.event_path:
        return
    pr_number = merge_commit = None
    if approval is not None and approval.kind == "github":
        pr_number, merge_commit = approval.pr_number, approval.merge_commit
    elif evidence.event is not None:
        pull = evidence.event.get("pull_request") if isinstance(evidence.event, dict) else None
        if isinstance(pull, dict):  # an event that is no approval: keep only what is plausible
            number, sha = pull.get("number"), pull.get("merge_commit_sha")
            pr_number = number if type(number) is int and 0 < number < 2**31 else None
            merge_commit = sha if isinstance(sha, str) and 0 < len(sha) <= 64 else None
    try:
        control.record_apply_failure(
            store,
            message=str(refused).removeprefix("apply refused, nothing was changed: "),
            details=refused.details,
            now=now,
            serial=serial,
            pr_number=pr_number,
            merge_commit=merge_commit,
            approved_by=approval.approved_by if approval is not None else None,
        )
    except CampaignsError:  # the refusal is what the user must see; the drift record is a courtesy
        pass

