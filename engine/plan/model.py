"""A plan is a value: what ``apply`` would change, computed once, rendered many ways, saved.

The JSON form (``Plan.to_json``) is versioned (``format_version``); ``engine.plan.planfile``
adds its checksum, prints and saves it, and reads it back. A finished plan is not changed:
``Change`` is frozen (the planner decides one on a ``ChangeDraft`` and freezes it), and what
apply adds to the plan it refuses (the missing approval) is a new plan (``Plan.with_blocker``).
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields, make_dataclass, replace
from typing import Any, Literal

FORMAT_VERSION = 1
PLAN_KIND = "campaigns-plan"

Action = Literal["create", "update", "delete", "no-op"]
ACTIONS: tuple[str, ...] = ("create", "update", "delete", "no-op")
MARKERS = {"create": "+", "update": "~", "delete": "-", "no-op": " "}

# blocker codes (SPEC section 5)
NEEDS_PILOT_TEST = "needs-pilot-test"
NEEDS_APPROVAL = "needs-approval"
TEMPLATE_NOT_APPROVED = "template-not-approved"
BLOCKER_CODES = (NEEDS_PILOT_TEST, NEEDS_APPROVAL, TEMPLATE_NOT_APPROVED)


@dataclass(frozen=True)
class FieldDiff:
    """One field-level difference: ``path`` like ``schedule.windows[0].start``; ``old``/``new``
    are absent (``None`` with ``kind`` added/removed) when the field did not exist on that side."""

    path: str
    kind: Literal["changed", "added", "removed"]
    old: Any = None
    new: Any = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "kind": self.kind}
        if self.kind != "added":
            out["old"] = self.old
        if self.kind != "removed":
            out["new"] = self.new
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FieldDiff:
        return cls(data["path"], data["kind"], data.get("old"), data.get("new"))


@dataclass(frozen=True)
class Blocker:
    """Why a change cannot be applied yet (``code`` is one of BLOCKER_CODES)."""

    code: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class PlanWarning:
    """Something a reviewer should know that does not block the apply (``code`` is stable, e.g.
    ``missing-attribute``)."""

    code: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class StatusChange:
    """A task's status transition; ``before`` is None for a task the state does not know."""

    before: str | None
    after: str

    @property
    def changes(self) -> bool:
        return self.before != self.after

    def describe(self) -> str:
        return f"{self.before or '(new)'} -> {self.after}"

    def to_json(self) -> dict[str, Any]:
        return {"from": self.before, "to": self.after}


@dataclass(frozen=True)
class OccurrenceView:
    """One upcoming occurrence of a task, as the plan shows it (ISO 8601 with UTC offsets)."""

    key: str
    start: str
    finish: str

    def to_json(self) -> dict[str, str]:
        return {"key": self.key, "start": self.start, "finish": self.finish}


@dataclass(frozen=True)
class SchedulePreview:
    timezone: str
    upcoming: tuple[OccurrenceView, ...]
    total: int

    def to_json(self) -> dict[str, Any]:
        return {"timezone": self.timezone, "next": [o.to_json() for o in self.upcoming], "total": self.total}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SchedulePreview:
        return cls(data["timezone"], tuple(OccurrenceView(**o) for o in data["next"]), data["total"])


@dataclass(frozen=True)
class Change:
    """What the plan does to one address.

    ``body`` is the desired body for create/update (what apply stores). For tasks, ``status`` is
    the transition and ``content_digest`` the digest of the task's content (task, creatives,
    templates) that pilot tests are recorded against.
    """

    address: str
    kind: str
    id: str
    action: str
    before_digest: str | None = None
    after_digest: str | None = None
    body: dict[str, Any] | None = None
    diffs: list[FieldDiff] = field(default_factory=list)
    status: StatusChange | None = None
    content_digest: str | None = None
    blockers: list[Blocker] = field(default_factory=list)
    warnings: list[PlanWarning] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    schedule: SchedulePreview | None = None
    audience_size: dict[str, Any] | None = None  # tasks: {"before", "after"[, "reason"]} (engine.plan.impact)
    size: dict[str, Any] | None = None  # audiences: {"before", "after"[, "reason"]}
    tasks: list[str] | None = None  # audiences: the running or planned tasks that use it
    sms: list[dict[str, Any]] | None = None  # SMS tasks: per creative {"creative", "encoding", "segments", ...}
    sms_cost: dict[str, Any] | None = None  # SMS tasks: {"before", "after", "currency"}, creatives split evenly
    attachments: list[dict[str, str]] = field(default_factory=list)  # [{"digest", "path"}] (CSV audiences)

    @classmethod
    def no_op(cls, address: str, kind: str, rid: str, digest: str, status: StatusChange | None) -> Change:
        """An unchanged address. A plan of 20,000 unchanged resources makes 20,000 of these for
        its JSON: filled directly, without the frozen ``__init__``'s one ``object.__setattr__``
        per field (a third of the JSON's time)."""
        change = object.__new__(cls)
        change.__dict__.update(
            address=address, kind=kind, id=rid, action="no-op", before_digest=digest, after_digest=digest,
            body=None, diffs=[], status=status, content_digest=None, blockers=[], warnings=[], notes=[],
            schedule=None, audience_size=None, size=None, tasks=None, sms=None, sms_cost=None, attachments=[],
        )
        return change

    @property
    def marker(self) -> str:
        return MARKERS[self.action]

    @property
    def is_change(self) -> bool:
        return self.action != "no-op"

    def blocker_codes(self) -> list[str]:
        return [blocker.code for blocker in self.blockers]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"address": self.address, "kind": self.kind, "id": self.id, "action": self.action}
        if self.action == "no-op":
            out["digest"] = self.after_digest
            if self.status is not None:
                out["status"] = self.status.to_json()
            return out
        out["before_digest"] = self.before_digest
        out["after_digest"] = self.after_digest
        if self.status is not None:
            out["status"] = self.status.to_json()
        if self.content_digest is not None:
            out["content_digest"] = self.content_digest
        out["diffs"] = [d.to_json() for d in self.diffs]
        out["blockers"] = [b.to_json() for b in self.blockers]
        out["warnings"] = [w.to_json() for w in self.warnings]
        if self.notes:
            out["notes"] = list(self.notes)
        if self.schedule is not None:
            out["schedule"] = self.schedule.to_json()
        if self.audience_size is not None:
            out["audience_size"] = self.audience_size
        if self.size is not None:
            out["size"] = self.size
        if self.tasks is not None:
            out["tasks"] = list(self.tasks)
        if self.sms is not None:
            out["sms"] = self.sms
        if self.sms_cost is not None:
            out["sms_cost"] = self.sms_cost
        if self.attachments:
            out["attachments"] = list(self.attachments)
        if self.body is not None:
            out["body"] = self.body
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Change:
        status = data.get("status")
        if data["action"] == "no-op":
            return cls(
                data["address"],
                data["kind"],
                data["id"],
                "no-op",
                before_digest=data.get("digest"),
                after_digest=data.get("digest"),
                status=StatusChange(status["from"], status["to"]) if status else None,
            )
        schedule = data.get("schedule")
        return cls(
            address=data["address"],
            kind=data["kind"],
            id=data["id"],
            action=data["action"],
            before_digest=data.get("before_digest"),
            after_digest=data.get("after_digest"),
            body=data.get("body"),
            diffs=[FieldDiff.from_json(d) for d in data.get("diffs", [])],
            status=StatusChange(status["from"], status["to"]) if status else None,
            content_digest=data.get("content_digest"),
            blockers=[Blocker(b["code"], b["message"]) for b in data.get("blockers", [])],
            warnings=[PlanWarning(w["code"], w["message"]) for w in data.get("warnings", [])],
            notes=list(data.get("notes", [])),
            schedule=SchedulePreview.from_json(schedule) if schedule else None,
            audience_size=data.get("audience_size"),
            size=data.get("size"),
            tasks=data.get("tasks"),
            sms=data.get("sms"),
            sms_cost=data.get("sms_cost"),
            attachments=list(data.get("attachments", [])),
        )

    def summary_json(self) -> dict[str, Any]:
        """The compact form kept in the state's history."""
        out: dict[str, Any] = {"address": self.address, "action": self.action, "digest": self.after_digest}
        if self.status is not None:
            out["status"] = self.status.to_json()
        return out


def _freeze(draft: Any) -> Change:
    return Change(**vars(draft))  # the draft has exactly Change's fields


def _is_change(draft: Any) -> bool:
    return draft.action != "no-op"


ChangeDraft = make_dataclass(
    "ChangeDraft",
    [
        (f.name, f.type, field(default=f.default, default_factory=f.default_factory))
        if f.default is not MISSING or f.default_factory is not MISSING
        else (f.name, f.type)
        for f in fields(Change)
    ],
    namespace={"freeze": _freeze, "is_change": property(_is_change), "__module__": __name__},
)
ChangeDraft.__doc__ = """A ``Change`` while the planner is still deciding it: the same fields, settable;
``freeze()`` makes the Change the plan holds. (Made from Change's fields, so they are written once.)"""


def _split(address: str) -> tuple[str, str]:
    if address == "platform":
        return "platform", "platform"
    kind, _, rid = address.partition(".")
    return kind, rid


_KIND_ORDER = {kind: index for index, kind in enumerate(("platform", "template", "audience", "creative", "campaign", "task"))}


def change_order(change: Change) -> tuple[int, str]:
    """Plans list changes by kind (platform, templates, audiences, creatives, campaigns, tasks), then id."""
    return _KIND_ORDER.get(change.kind, len(_KIND_ORDER)), change.id


class Plan:
    """Every change between a repository and a state, and what is needed to apply them.

    ``changes`` lists every address, no-ops included. A planner may pass the no-ops separately
    as ``noops`` (``(address, digest, status or None)``) so that a plan of 20,000 unchanged
    resources does not build 20,000 objects unless someone asks for them (JSON does).
    """

    def __init__(
        self,
        lineage: str | None,  # None: the state did not exist yet (apply creates it)
        serial: int,
        repository_digest: str,
        created_at: str,
        state: str,
        changes: list[Change],
        approved: bool = False,
        noops: list[tuple[str, str, StatusChange | None]] | None = None,
        drift: list[dict[str, Any]] | None = None,
        forecast: list[dict[str, Any]] | None = None,
        impact_notes: list[str] | None = None,
    ) -> None:
        self.lineage = lineage
        self.serial = serial
        self.repository_digest = repository_digest
        self.created_at = created_at  # ISO 8601, UTC
        self.state = state  # the state URL it was made against (for people; apply checks lineage and serial)
        self.approved = approved  # evidence was given when the plan was made (apply time)
        self._given = changes
        self.drift = list(drift or [])  # engine.plan.drift: what the state holds that git does not say
        # engine.plan.impact: per site and day {"site", "date", "messages", "users", "capped", ...}
        self.forecast = list(forecast or [])
        self.impact_notes = list(impact_notes or [])  # why sizes or the forecast are missing
        self._noops = noops
        self._all: list[Change] | None = None if noops is not None else changes

    # -- queries ---------------------------------------------------------------------------

    @property
    def changes(self) -> list[Change]:
        """Every address, in plan order (see ``change_order``)."""
        if self._all is None:
            everything = list(self._given)
            for address, digest, status in self._noops or ():
                kind, rid = _split(address)
                everything.append(Change.no_op(address, kind, rid, digest, status))
            everything.sort(key=change_order)
            self._all = everything
        return self._all

    @property
    def actionable(self) -> list[Change]:
        """The changes that do something (no-ops left out), in plan order."""
        source = self._given if self._all is None else self._all
        return [change for change in source if change.is_change]

    @property
    def has_changes(self) -> bool:
        source = self._given if self._all is None else self._all
        return any(change.is_change for change in source)

    def summary(self) -> dict[str, int]:
        counts = dict.fromkeys(ACTIONS, 0)
        if self._all is None:
            for change in self._given:
                counts[change.action] += 1
            counts["no-op"] += len(self._noops or ())
            return counts
        for change in self._all:
            counts[change.action] += 1
        return counts

    def blockers(self, *, ignore: tuple[str, ...] = ()) -> dict[str, list[Change]]:
        """code -> changes blocked by it (in plan order)."""
        found: dict[str, list[Change]] = {}
        for change in self.actionable:
            for blocker in change.blockers:
                if blocker.code not in ignore:
                    found.setdefault(blocker.code, []).append(change)
        return found

    def with_blocker(self, blocker: Blocker) -> Plan:
        """This plan with ``blocker`` added to every change that does something (a new plan;
        this one is left as it is)."""
        blocked = [replace(c, blockers=[*c.blockers, blocker]) if c.is_change else c for c in (self._given if self._all is None else self._all)]
        return Plan(
            self.lineage, self.serial, self.repository_digest, self.created_at, self.state, blocked,
            approved=self.approved, noops=self._noops if self._all is None else None,
            drift=self.drift, forecast=self.forecast, impact_notes=self.impact_notes,
        )

    def change(self, address: str) -> Change | None:
        for change in self.changes:
            if change.address == address:
                return change
        return None

    def fingerprint(self) -> list[tuple[str, str, str | None]]:
        """What apply writes, as comparable values: (address, action, desired digest)."""
        return sorted((c.address, c.action, c.after_digest) for c in self.actionable)

    # -- JSON ------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        summary = self.summary()
        blockers = self.blockers()
        document: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "kind": PLAN_KIND,
            "created_at": self.created_at,
            "lineage": self.lineage,
            "serial": self.serial,
            "state": self.state,
            "repository_digest": self.repository_digest,
            "summary": {
                "create": summary["create"],
                "update": summary["update"],
                "delete": summary["delete"],
                "no_op": summary["no-op"],
                "changes": summary["create"] + summary["update"] + summary["delete"],
            },
            "blockers": {code: [c.address for c in changes] for code, changes in blockers.items()},
            "drift": list(self.drift),
            "forecast": list(self.forecast),
            "impact_notes": list(self.impact_notes),
            "changes": [change.to_json() for change in self.changes],
        }
        return document

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Plan:
        return cls(
            lineage=document["lineage"],
            serial=document["serial"],
            repository_digest=document["repository_digest"],
            created_at=document["created_at"],
            state=document.get("state", ""),
            changes=[Change.from_json(c) for c in document["changes"]],
            drift=document.get("drift") or [],
            forecast=document.get("forecast") or [],
            impact_notes=document.get("impact_notes") or [],
        )
