"""Put a platform, tasks, creatives, templates and audiences straight into a state (as ``apply``
would store them: task bodies carry their ``campaign``), and users into its directory, for the
executor's tests.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Any

SITE = "ph"
TIMEZONE = "Asia/Manila"
APPLIED_AT = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
"""When ``seed`` and ``set_status`` say the apply happened (the tasks' ``since``): before every date
the executor tests deliver on, whatever the machine's clock says."""
SERVICE_DAY = dt.date(2026, 12, 1)
SERVICE_NOW = "2026-12-01T12:00:00+08:00"
"""Where the clock of a service under test (``campaigns run --now SERVICE_NOW``, no ``--once``)
starts: noon of SERVICE_DAY in the site's zone, so a task running the day before to the day after
with a 00:00-23:59 window is open for hours, whatever the machine's clock says."""


def platform_body(
    *,
    outbox: Path | str | None = None,
    cap: int | None = None,
    rates: dict[str, int] | None = None,
    providers: dict[str, Any] | None = None,
    batch_size: int | None = None,
) -> dict[str, Any]:
    limits: dict[str, Any] = {}
    if cap is not None:
        limits["max_per_user_per_day"] = cap
    if rates:
        limits["rate_per_second"] = rates
    body: dict[str, Any] = {
        "sites": {
            SITE: {
                "name": "Philippines",
                "timezone": TIMEZONE,
                "channels": ["push", "sms", "inbox-ewallet", "inbox-miniprogram"],
                "testers": ["u-tester"],
                "limits": limits,
            }
        },
        "providers": providers or {"default": {"type": "outbox", "path": str(outbox or ".campaigns/outbox")}},
    }
    if batch_size is not None:
        body["executor"] = {"batch_size": batch_size, "poll_interval": 1}
    return body


def template_body(channel: str = "push") -> dict[str, Any]:
    fields: dict[str, Any] = {"title": {"required": True, "max_length": 100}, "content": {"required": True, "max_length": 500}}
    if channel != "sms":
        fields["redirection"] = {"required": True, "max_length": 2048}
    return {
        "name": f"Template {channel}",
        "channel": channel,
        "status": "approved",
        "fields": fields,
        "variables": {"first_name": {"example": "Maria"}, "points": {"example": 10}},
    }


def creative_body(title: str = "Hi {{ user.first_name }}", content: str = "You have {{ user.points }} points",
                  template: str = "tpl-push", redirection: Any = "https://shop.example.com/x") -> dict[str, Any]:
    body: dict[str, Any] = {"name": "Creative", "template": template, "title": title, "content": content}
    if redirection is not None:
        body["redirection"] = redirection
    return body


def task_body(
    *,
    channel: str = "push",
    start: str = "2026-12-01",
    finish: str = "2026-12-01",
    windows: list[tuple[str, str]] | None = None,
    recurrence: dict[str, Any] | None = None,
    audiences: list[str] | None = None,
    creatives: list[str] | None = None,
    do_not_disturb: list[str] | None = None,
    campaign: str = "camp",
) -> dict[str, Any]:
    schedule: dict[str, Any] = {
        "start_date": start,
        "finish_date": finish,
        "windows": [{"start": a, "finish": b} for a, b in (windows or [("09:00", "11:30")])],
        "recurrence": recurrence or {"type": "one_time"},
    }
    if do_not_disturb:
        schedule["do_not_disturb"] = do_not_disturb
    return {
        "name": "Task",
        "site": SITE,
        "channel": channel,
        "schedule": schedule,
        "audiences": audiences or ["everyone"],
        "creatives": creatives or ["cr-a"],
        "status": "active",
        "campaign": campaign,
    }


def everyone_audience() -> dict[str, Any]:
    return {"name": "Everyone", "site": SITE, "refresh": "auto", "source": {"where": {"all": [{"attr": "points", "exists": True}]}}}


def seed(
    store: Any,
    *,
    platform: dict[str, Any],
    tasks: dict[str, dict[str, Any]],
    creatives: dict[str, dict[str, Any]] | None = None,
    templates: dict[str, dict[str, Any]] | None = None,
    audiences: dict[str, dict[str, Any]] | None = None,
    statuses: dict[str, str] | None = None,
    now: dt.datetime = APPLIED_AT,
) -> None:
    """Store these resources (one apply, at ``now``) and set every task's status (``running``
    unless given)."""
    from engine.state import ResourceVersion, TaskStateWrite

    creatives = creatives or {"cr-a": creative_body()}
    templates = templates or {"tpl-push": template_body("push")}
    audiences = audiences or {"everyone": everyone_audience()}
    versions = [ResourceVersion("platform", "platform", "platform", platform)]
    for kind, items in (("task", tasks), ("creative", creatives), ("template", templates), ("audience", audiences)):
        versions += [ResourceVersion(f"{kind}.{name}", kind, name, body) for name, body in items.items()]
    meta = store.meta()
    with store.transaction(meta.lineage, meta.serial, now=now) as tx:
        tx.put_resources(versions)
        tx.set_task_states(
            [TaskStateWrite(task_id, (statuses or {}).get(task_id, "running"), f"digest-{task_id}") for task_id in tasks]
        )
        tx.append_history(approval=None, summary={}, changes=[])


def set_status(
    store: Any, task_id: str, status: str, digest: str | None = None, now: dt.datetime = APPLIED_AT
) -> None:
    """Record a task's status as an apply at ``now`` would."""
    from engine.state import TaskStateWrite

    meta = store.meta()
    with store.transaction(meta.lineage, meta.serial, now=now) as tx:
        tx.set_task_states([TaskStateWrite(task_id, status, digest or f"digest-{task_id}")])
        tx.append_history(approval=None, summary={}, changes=[])


def write_users(path: Path, count: int, *, prefix: str = "u", opt_out: dict[int, str] | None = None,
                missing_name: set[int] | None = None) -> list[str]:
    """A users CSV with ``count`` users ``<prefix>00000``...; returns their ids."""
    ids = []
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "first_name", "points", "opt_out"])
        for number in range(count):
            user_id = f"{prefix}{number:05d}"
            ids.append(user_id)
            name = "" if missing_name and number in missing_name else f"Name{number}"
            writer.writerow([user_id, name, number, (opt_out or {}).get(number, "")])
    return ids


def import_users(store: Any, path: Path) -> None:
    from engine.delivery.directory import import_users as load

    load(store, path)


def outbox_lines(folder: Path, channel: str = "push") -> list[dict[str, Any]]:
    import json

    path = Path(folder) / f"{channel}.jsonl"
    if not path.exists():
        return []
    text = path.read_text()
    complete = text[: text.rfind("\n") + 1]  # a line being written right now is not there yet
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def service_task() -> dict[str, Any]:
    """A push task open all day from the day before SERVICE_DAY to the day after: what a service
    started with ``--now SERVICE_NOW`` delivers at once."""
    return task_body(
        start=(SERVICE_DAY - dt.timedelta(days=1)).isoformat(),
        finish=(SERVICE_DAY + dt.timedelta(days=1)).isoformat(),
        windows=[("00:00", "23:59")],
    )
