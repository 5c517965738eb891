"""How the plan shows what a change will do: size lines, SMS lines, the forecast, campaign summaries.

Shared by the text and Markdown plans (``engine.plan.render``); the values come from
``engine.plan.impact`` (see there for their shape).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from engine.plan.model import Change, Plan
from engine.sms import describe, format_money, money


def _count(value: int | None) -> str:
    return "unknown" if value is None else f"{value:,}"


def size_text(sized: dict[str, Any] | None, noun: str = "user") -> str | None:
    """``5,000 users (was 8,000; -3,000)``, ``120 users (new)``, ``unknown (why)``."""
    if sized is None:
        return None
    before, after = sized.get("before"), sized.get("after")
    if after is None and before is None:
        return f"unknown ({sized.get('reason', 'not counted')})"
    text = f"{_count(after)} {noun}{'' if after == 1 else 's'}"
    if before is None:
        return text + (" (new)" if "reason" not in sized else f" (before: unknown, {sized['reason']})")
    if after is None:
        return text + f" (was {before:,}; {sized.get('reason', 'not counted')})"
    delta = after - before
    return text + (f" (was {before:,}; {delta:+,})" if delta else " (unchanged)")


def money_text(cost: dict[str, Any] | None, key: str) -> str | None:
    if not cost or cost.get(key) is None:
        return None
    return format_money(money(cost[key]), cost["currency"])


def sms_lines(change: Change) -> list[str]:
    lines = []
    for entry in change.sms or ():
        if entry.get("encoding") is None:
            lines.append(f"sms {entry['creative']}: {entry.get('reason', 'not counted')}")
            continue
        text = f"sms {entry['creative']}: {entry['encoding']}, {entry['segments']} segment{'s' if entry['segments'] != 1 else ''}"
        if entry.get("forcing"):
            text += f" (UCS-2 because of {describe(entry['forcing'])})"
        per, total = money_text(entry.get("cost"), "per_message"), money_text(entry.get("cost"), "total")
        if per:
            text += f"; {per} a message"
            text += f", {total} in all" if total else ", total unknown (audience size unknown)"
        lines.append(text)
    return lines


def impact_lines(change: Change) -> list[str]:
    """The size and SMS lines of one change."""
    lines = []
    if change.kind == "task" and change.audience_size is not None:
        lines.append(f"audience: {size_text(change.audience_size)}")
    if change.kind == "audience" and change.size is not None:
        lines.append(f"size: {size_text(change.size, 'member')}")
        if change.tasks is not None:
            used = ", ".join(change.tasks[:10]) + (f" and {len(change.tasks) - 10} more" if len(change.tasks) > 10 else "")
            lines.append(f"used by running or planned tasks: {used or 'none'}")
    lines.extend(sms_lines(change))
    cost = change.sms_cost
    if cost:
        def shown(value: float | None) -> str:
            return "unknown" if value is None else money_text({"v": value, "currency": cost["currency"]}, "v") or ""

        lines.append(f"sms cost (users split over the creatives): {shown(cost.get('after'))} (was {shown(cost.get('before'))})"
                     if change.action != "create" else f"sms cost (users split over the creatives): {shown(cost.get('after'))}")
    return lines


def forecast_text(plan: Plan) -> list[str]:
    """A few lines: one per site and day with messages, marking capped days."""
    lines = [f"note: {note}" for note in plan.impact_notes]
    if plan.forecast:
        lines.append("Forecast (site-local days, running and planned tasks):")
        for entry in plan.forecast:
            mark = "!" if entry["capped"] else " "
            capped = f", {entry['capped']:,} capped (cap {entry['cap']}/day)" if entry["capped"] else ""
            lines.append(
                f"  {mark} {entry['site']} {entry['date']}: {entry['messages']:,} messages to {entry['users']:,} users{capped}"
            )
    return lines


def forecast_markdown(plan: Plan) -> list[str]:
    """A small table; a ⚠️ on days the cap holds anyone back."""
    lines = [f"> {note}" for note in plan.impact_notes]
    if lines:
        lines.append("")
    if plan.forecast:
        lines += [
            "**Forecast** (site-local days, running and planned tasks):",
            "",
            "| Site | Date | Messages | Users | Capped |",
            "|---|---|---:|---:|---:|",
        ]
        shown = _rows_shown(plan.forecast, FORECAST_ROWS)
        for entry in shown:
            capped = f"⚠️ {entry['capped']:,}" if entry["capped"] else "0"
            lines.append(f"| {entry['site']} | {entry['date']} | {entry['messages']:,} | {entry['users']:,} | {capped} |")
        if len(shown) < len(plan.forecast):
            lines.append(f"| … | {len(plan.forecast) - len(shown):,} more days | | | |")
        lines.append("")
    return lines


FORECAST_ROWS = 60  # site-days in the PR comment's table (days that cap anyone first); JSON has all
CAMPAIGN_LINES = 30  # campaign summary lines in the PR comment


def _rows_shown(entries: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """At most ``limit`` entries in their order, days that cap anyone kept first."""
    if len(entries) <= limit:
        return entries
    capped = [index for index, entry in enumerate(entries) if entry["capped"]]
    others = [index for index, entry in enumerate(entries) if not entry["capped"]]
    keep = sorted((capped + others)[:limit])
    return [entries[index] for index in keep]


def campaign_summaries(plan: Plan) -> list[str]:
    """One line per campaign: changes, audience size delta, SMS cost, days with caps."""
    campaigns: dict[str, dict[str, Any]] = {}
    capped_days: dict[str, set[str]] = {}
    for entry in plan.forecast:
        if entry["capped"]:
            for task in entry.get("tasks", ()):
                capped_days.setdefault(task, set()).add(entry["date"])
    for change in plan.actionable:
        if change.kind != "task":
            continue
        body = change.body or {}
        campaign = body.get("campaign") or "(deleted tasks)"
        info = campaigns.setdefault(campaign, {"changes": 0, "delta": 0, "unknown": False, "cost": {}, "caps": set()})
        info["changes"] += 1
        sized = change.audience_size or {}
        if sized.get("after") is not None:
            info["delta"] += sized["after"] - (sized.get("before") or 0)
        elif change.audience_size is not None:
            info["unknown"] = True
        cost = change.sms_cost or {}
        if cost.get("after") is not None or cost.get("before") is not None:
            delta = money(cost.get("after") or 0) - money(cost.get("before") or 0)
            info["cost"][cost["currency"]] = info["cost"].get(cost["currency"], Decimal(0)) + delta
        info["caps"] |= capped_days.get(change.id, set())
    lines = []
    for campaign, info in sorted(campaigns.items()):
        parts = [f"{info['changes']} task change{'s' if info['changes'] != 1 else ''}"]
        parts.append("audience " + ("unknown" if info["unknown"] and not info["delta"] else f"{info['delta']:+,} users"))
        if info["cost"]:
            parts.append("SMS cost " + ", ".join(("+" if v >= 0 else "-") + format_money(abs(v), c) for c, v in sorted(info["cost"].items())))
        if info["caps"]:
            parts.append(f"capped on {len(info['caps'])} day{'s' if len(info['caps']) != 1 else ''}")
        lines.append(f"{campaign}: " + "; ".join(parts))
    return lines
