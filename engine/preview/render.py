"""The preview page as HTML (one self-contained file) and as a short text for a CI job summary.

The HTML comes from Jinja2 templates shipped in this package with autoescaping on: every value
a creative, a user attribute or a plan carries is escaped, so no text can add markup to the
page. The page has inline CSS only, a Content-Security-Policy that forbids loading anything, and
no script.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from engine.preview.model import PreviewPage

CHANNEL_NAMES = {
    "push": "push notification",
    "sms": "SMS",
    "inbox-ewallet": "eWallet inbox",
    "inbox-miniprogram": "mini program inbox",
}


def money(amount: object) -> str:
    """A plan amount for people: thousands separated, at least two decimals, "unknown" for None."""
    if amount is None:
        return "unknown"
    try:
        value = float(amount)
    except (TypeError, ValueError):
        return str(amount)
    text = f"{value:,.4f}".rstrip("0")
    whole, _, decimals = text.partition(".")
    return f"{whole}.{decimals.ljust(2, '0')}"


@cache
def environment() -> Environment:
    """Autoescaping, strict (an unknown name in a template is an error, not an empty string)."""
    env = Environment(
        loader=PackageLoader("engine.preview", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["channel_names"] = CHANNEL_NAMES
    env.globals["money"] = money
    return env


def to_html(page: PreviewPage) -> str:
    """The whole page."""
    return environment().get_template("page.html.j2").render(page=page)


def to_text(page: PreviewPage, *, limit: int = 40) -> str:
    """A few Markdown lines: which tasks the page shows, their audience and failures (at most
    ``limit`` task lines)."""
    ids = [task.id for task in page.tasks]
    named = ", ".join(ids[:limit]) + (f" and {len(ids) - limit} more" if len(ids) > limit else "")
    lines = [f"Preview of {len(ids)} task{'s' if len(ids) != 1 else ''}: {named or '(none)'}", ""]
    for task in page.tasks[:limit]:
        cards = sum(len(c.new.cards) for c in task.creatives)
        if task.audience_known:
            size = (f"{task.audience_before:,} → " if task.audience_before is not None else "") + f"{task.audience_after:,}"
        else:
            size = "unknown" if task.action != "no-op" else "unchanged"
        failed = f", **{task.failures} failing**" if task.failures else ""
        if task.sms_cost:
            before = task.sms_cost.get("before")
            failed += f", SMS cost {money(before) + ' → ' if before is not None else ''}{money(task.sms_cost.get('after'))} {task.sms_cost.get('currency', '')}"
        lines.append(
            f"- `{task.id}` ({CHANNEL_NAMES[task.channel]}, {task.action}): {cards} card{'s' if cards != 1 else ''}{failed}, "
            f"audience {size}, {task.calendar.occurrence_days} delivery day{'s' if task.calendar.occurrence_days != 1 else ''} shown"
        )
        for creative in task.creatives:
            for card in creative.new.cards:
                if not card.ok:
                    lines.append(f"  - {creative.id} for {card.tester}: {card.reason}: {card.error}")
    if len(page.tasks) > limit:
        lines.append(f"- … and {len(page.tasks) - limit} more tasks (see the page)")
    if page.forecast:
        capped = [row for row in page.forecast if row.get("capped")]
        lines.append("")
        lines.append(
            f"Cap forecast: {len(page.forecast)} site-day{'s' if len(page.forecast) != 1 else ''}, "
            + (f"{len(capped)} with capped users" if capped else "no one capped")
        )
    return "\n".join(lines) + "\n"


def write(page: PreviewPage, out_dir: Path) -> Path:
    """Write ``out_dir/index.html`` (folders created); returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "index.html"
    target.write_text(to_html(page), encoding="utf-8")
    return target
