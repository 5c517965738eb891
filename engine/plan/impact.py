"""What a change will do (SPEC section 5): audience sizes, warnings, SMS cost and the cap forecast.

The planner asks the state side (``engine.plan.impact_query``, through the same ``details``
request as the field differences) for counts, then fills the changes being decided (``ChangeDraft``) with them. The shape,
which ``campaigns preview`` and the JSON plan read:

- a task change: ``audience_size = {"before": int|None, "after": int|None}`` (``before`` None
  for a new task; with a ``"reason"`` key when a size is unknown); for an SMS task ``sms = [{"creative",
  "encoding": "gsm-7"|"ucs-2", "segments", "units", "forcing": [chars], "cost": {"per_message",
  "total", "currency"}|None}]`` and ``sms_cost = {"before", "after", "currency"}`` (what the task's
  SMS cost with users split evenly over its creatives; ``before`` from the stored creatives);
- an audience change: ``size = {"before", "after"[, "reason"]}`` and ``tasks`` (the running or
  planned tasks that use it, directly or through ``include``);
- ``warnings`` on changes: ``audience-empty``, ``audience-shrinks``, ``sms-segments``, ``cap-forecast``;
- ``Plan.forecast``: per site and site-local day ``{"site", "date", "messages", "users",
  "capped", "capped_messages", "cap", "tasks"}``; ``capped`` counts users the site's
  ``max_per_user_per_day`` holds back at least one message of, ``capped_messages`` the
  messages held back; ``Plan.impact_notes``: why sizes or the forecast are missing.

Which days a task is due: a recurring task on each occurrence date; a one-time task on the first
date of its range only (delivery starts there and reaches everyone in its first window as a
rule); a one-time task that started before the first forecast day is not counted again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine import sms
from engine.config.models import OneTime, Schedule
from engine.plan.impact_query import NO_DIRECTORY, ImpactRequest
from engine.plan.model import ChangeDraft, PlanWarning
from engine.schedule.occurrences import occurrence_dates, site_zone

if TYPE_CHECKING:
    from engine.plan.desired import Desired
    from engine.plan.impact_query import ImpactAnswer

DEFAULT_FORECAST_DAYS = 7
MAX_FORECAST_DAYS = 366

AUDIENCE_EMPTY = "audience-empty"
AUDIENCE_SHRINKS = "audience-shrinks"
SMS_SEGMENTS = "sms-segments"
CAP_FORECAST = "cap-forecast"
WARNING_CODES = (AUDIENCE_EMPTY, AUDIENCE_SHRINKS, SMS_SEGMENTS, CAP_FORECAST)


@dataclass
class ForecastPlan:
    """Which tasks are due on which site-local day (computed here, counted by the state side)."""

    days: list[tuple[str, dt.date, tuple[str, ...]]] = field(default_factory=list)  # (site, date, tasks due)
    caps: dict[str, int | None] = field(default_factory=dict)

    def distinct_sets(self) -> list[tuple[str, tuple[str, ...]]]:
        """One entry per distinct (site, set of tasks) with at least one task (the state side
        answers them all from one grouped query, ``engine.delivery.forecast.combinations``)."""
        return list(dict.fromkeys((site, tasks) for site, _, tasks in self.days if tasks))


def site_today(timezone: str, now: dt.datetime) -> dt.date:
    return now.astimezone(site_zone(timezone)).date()


def due_dates(schedule: Any, first: dt.date, last: dt.date) -> list[dt.date]:
    """The dates in [first, last] on which a task with this schedule delivers (module docstring)."""
    dates = occurrence_dates(schedule)
    if isinstance(schedule.recurrence, OneTime):
        start = next(iter(dates), None)
        return [start] if start is not None and first <= start <= last else []
    found = []
    for day in dates:
        if day > last:
            break
        if day >= first:
            found.append(day)
    return found


def plan_forecast(desired: Desired, running: Iterable[str], now: dt.datetime, days: int) -> ForecastPlan:
    """Every site's next ``days`` local days and the running or planned tasks due on each."""
    repository = desired.repository
    sites = repository.platform.data.get("sites") or {}
    result = ForecastPlan()
    if days <= 0:
        return result
    due: dict[tuple[str, dt.date], list[str]] = {}
    ranges: dict[str, tuple[dt.date, dt.date]] = {}
    for site_id, site in sites.items():
        first = site_today(site["timezone"], now)
        ranges[site_id] = (first, first + dt.timedelta(days=days - 1))
        result.caps[site_id] = ((site.get("limits") or {}).get("max_per_user_per_day"))
    for task_id in sorted(running):
        data = repository.tasks[task_id].data
        site_id = data["site"]
        if site_id not in ranges:
            continue
        first, last = ranges[site_id]
        for day in due_dates(Schedule.model_validate(data["schedule"]), first, last):
            due.setdefault((site_id, day), []).append(task_id)
    for site_id, (first, _) in ranges.items():
        for offset in range(days):
            day = first + dt.timedelta(days=offset)
            result.days.append((site_id, day, tuple(due.get((site_id, day), ()))))
    return result


def reached_audiences(desired: Desired, task_id: str) -> set[str]:
    """The audiences a task names and every audience they include or exclude."""
    known = desired.repository.audiences
    seen: set[str] = set()
    stack = list(desired.repository.tasks[task_id].data.get("audiences") or [])
    while stack:
        rid = stack.pop()
        if rid in seen or rid not in known:
            continue
        seen.add(rid)
        source = known[rid].data.get("source") or {}
        stack.extend(source.get("include") or [])
        stack.extend(source.get("exclude") or [])
    return seen


def build_request(
    actionable: list[ChangeDraft], forecast: ForecastPlan, desired: Desired, running: Iterable[str]
) -> ImpactRequest:
    before = [c.id for c in actionable if c.kind == "task" and c.action in ("update", "delete")]
    audiences = {c.id: c.action != "delete" for c in actionable if c.kind == "audience"}
    tasks_due = sorted({task for _, _, tasks in forecast.days for task in tasks})
    changed_tasks = {c.id for c in actionable if c.kind == "task"}
    affected = {}
    if audiences:
        for task in sorted(set(running) - changed_tasks):
            if reached_audiences(desired, task) & audiences.keys():
                affected[task] = desired.body(f"task.{task}")
    return ImpactRequest(
        affected=affected,
        before=before,
        audiences=audiences,
        forecast_tasks={task: desired.body(f"task.{task}") for task in tasks_due},
        day_sets=forecast.distinct_sets(),
        caps=dict(forecast.caps),
    )


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def _sized(before: int | None, after: int | None, reason: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"before": before, "after": after}
    if reason and (after is None or before is None):
        out["reason"] = reason
    return out


def apply_answer(
    actionable: list[ChangeDraft],
    answer: ImpactAnswer | None,
    forecast: ForecastPlan,
    desired: Desired,
    running: set[str],
    *,
    limit_reason: str | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Fill sizes, SMS fields and warnings in the changes; the forecast entries and notes."""
    notes: list[str] = []
    if answer is not None and not answer.directory:
        notes.append(_no_directory_note())
    task_capped: dict[str, list[tuple[dt.date, int, int | None]]] = {}
    entries: list[dict[str, Any]] = []
    if forecast.days:
        if answer is None or not answer.directory:
            notes.append("the cap forecast needs the user directory; none was computed")
        else:
            for site, day, tasks in forecast.days:
                messages, users, capped, capped_messages, by_task = answer.sets.get(tasks, (0, 0, 0, 0, ()))
                cap = forecast.caps.get(site)
                entries.append({
                    "site": site,
                    "date": day.isoformat(),
                    "messages": messages,
                    "users": users,
                    "capped": capped,
                    "capped_messages": capped_messages,
                    "cap": cap,
                    "tasks": list(tasks),
                })
                for task, count in zip(tasks, by_task):
                    if count:
                        task_capped.setdefault(task, []).append((day, count, cap))
            for task, why in sorted(answer.skipped.items()):
                notes.append(f"task {task} is left out of the forecast: {why}")
    users_of: dict[str, list[str]] = {}
    for task_id in sorted(running):
        for audience_id in reached_audiences(desired, task_id):
            users_of.setdefault(audience_id, []).append(task_id)
    for change in actionable:
        if change.kind == "task":
            _task(change, answer, desired, task_capped, limit_reason)
        elif change.kind == "audience":
            change.tasks = users_of.get(change.id, [])
            before, after = (None, None)
            reason = None
            if answer is not None:
                before, after = answer.audiences.get(change.id, (None, None))
                reason = answer.reasons.get(f"audience.{change.id}") or (None if answer.directory else NO_DIRECTORY_SHORT)
            if change.action == "delete":
                after = 0 if before is not None else None
            change.size = _sized(before, after, reason or (limit_reason if answer is not None and change.id not in answer.audiences else None))
            if answer is not None:
                for task in change.tasks:
                    if task in answer.affected:
                        task_before, task_after = answer.affected[task]
                        change.warnings.extend(size_warnings(task_before, task_after, running=True, task=task))
    return entries, notes


NO_DIRECTORY_SHORT = "no user directory (campaigns users import FILE.csv)"
NO_FORECAST = "no cap forecast: it counts members in the user directory, and none was imported"


def _no_directory_note() -> str:
    return NO_DIRECTORY


def _task(
    change: ChangeDraft,
    answer: ImpactAnswer | None,
    desired: Desired,
    task_capped: dict[str, list[tuple[dt.date, int, int | None]]],
    limit_reason: str | None,
) -> None:
    task_id = change.id
    after = before = None
    reason = None
    if answer is not None:
        after = answer.after.get(task_id)
        before = answer.before.get(task_id)
        if task_id not in answer.after and change.action != "delete":
            reason = limit_reason or "not counted"
        else:
            reason = answer.reasons.get(task_id) or (None if answer.directory else NO_DIRECTORY_SHORT)
    else:
        reason = NO_DIRECTORY_SHORT
    if change.action == "delete":
        after = 0 if answer is not None and answer.directory else None
    if change.action == "create":
        before = None
    change.audience_size = _sized(before, after, reason)
    if change.action != "delete":
        was_running = change.status is not None and change.status.before == "running"
        change.warnings.extend(size_warnings(before, after, running=was_running))
    if change.action != "delete":
        _sms(change, desired, after)
    _sms_cost(change, desired, before, after, answer.segments_before.get(task_id) if answer is not None else None)
    days = task_capped.get(task_id)
    if days:
        shown = ", ".join(f"{count:,} on {day.isoformat()}" for day, count, _ in days[:5])
        more = f" and {len(days) - 5} more days" if len(days) > 5 else ""
        cap = days[0][2]
        change.warnings.append(PlanWarning(
            CAP_FORECAST,
            f"the daily cap of {cap} message{'s' if cap != 1 else ''} per user would hold back some of this task's users: "
            f"{shown}{more} (users due more messages that day than the cap; which task loses out depends on delivery order)",
        ))


def size_warnings(before: int | None, after: int | None, *, running: bool, task: str | None = None) -> list[PlanWarning]:
    """``audience-empty`` (no one after) and ``audience-shrinks`` (a running task loses more than half)."""
    who = f"task {task}" if task else "the task"
    found = []
    if after == 0:
        found.append(PlanWarning(
            AUDIENCE_EMPTY,
            f"{who} would reach no one: its audiences have no member in the user directory "
            "(check each rule's attribute and value: values are case-sensitive)",
        ))
    if running and before and after is not None and after * 2 < before:
        lost = before - after
        found.append(PlanWarning(
            AUDIENCE_SHRINKS,
            f"{f'running task {task}' if task else 'the running task'}'s audience shrinks from {before:,} to {after:,} members (loses {lost:,}, {lost * 100 // before}%)",
        ))
    return found


def _sms_cost(change: ChangeDraft, desired: Desired, before: int | None, after: int | None, stored: list[int] | None) -> None:
    """``sms_cost: {"before", "after", "currency"}``: what the task's SMS cost, users split evenly
    over its creatives (mean segments x price x audience), under the stored and the new definition."""
    repository = desired.repository
    data = repository.tasks[change.id].data if change.id in repository.tasks else None
    site_id = (data or {}).get("site") or (change.body or {}).get("site")
    settings = ((repository.platform.data.get("sites") or {}).get(site_id) or {}).get("sms") or {}
    price, currency = settings.get("price_per_segment"), settings.get("currency")
    if price is None or not currency:
        return
    segments_after = [e["segments"] for e in change.sms or () if e.get("segments") is not None]
    if not segments_after and not stored:
        return

    def expected(segments: list[int] | None, size: int | None) -> float | None:
        if not segments or size is None:
            return None
        return float(sms.money(price) * sum(segments) * size / len(segments))

    after_cost = 0.0 if change.action == "delete" else expected(segments_after, after)
    change.sms_cost = {"before": expected(stored, before), "after": after_cost, "currency": currency}


def _sms(change: ChangeDraft, desired: Desired, audience: int | None) -> None:
    repository = desired.repository
    data = repository.tasks[change.id].data
    if data.get("channel") != "sms":
        return
    site = (repository.platform.data.get("sites") or {}).get(data["site"]) or {}
    settings = site.get("sms") or {}
    price, currency, maximum = settings.get("price_per_segment"), settings.get("currency"), settings.get("max_segments")
    fields: list[dict[str, Any]] = []
    for creative_id in data.get("creatives") or []:
        creative = repository.creatives.get(creative_id)
        if creative is None:
            continue
        template = repository.templates.get(creative.data.get("template"))
        text = sms.example_text(creative.data, template.data if template is not None else {})
        if text is None:
            fields.append({"creative": creative_id, "encoding": None, "segments": None, "cost": None,
                           "reason": "its content cannot be rendered with the template's examples"})
            continue
        counted = sms.count(text)
        priced = sms.cost(counted, price, currency, audience) if price is not None and currency else None
        entry = {"creative": creative_id, **sms.plan_fields(counted, priced), "units": counted.units,
                 "forcing": list(counted.forcing)}
        fields.append(entry)
        if maximum is not None and counted.segments > maximum:
            why = f"; {sms.describe(counted.forcing)} force UCS-2 ({sms.UCS2_SINGLE} characters a segment)" if counted.forcing else ""
            change.warnings.append(PlanWarning(
                SMS_SEGMENTS,
                f"creative {creative_id} needs {counted.segments} segments ({counted.units} "
                f"{'septets' if counted.encoding == 'gsm-7' else 'UTF-16 units'}, {counted.encoding}), more than "
                f"site {data['site']}'s sms.max_segments of {maximum}{why}",
            ))
    change.sms = fields
