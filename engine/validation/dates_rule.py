"""The one rule that depends on the clock: ``dates-past``, a task whose every date is in the past.

Every other rule depends only on the files (and the user directory), which is what the
validation caches are keyed by. This one also depends on today's date in each site's time zone,
so its findings are computed across files (never in the per-file cache) and ``context`` gives
the result cache the dates they were computed for: on the next day, in any site, the cached
result no longer matches and the rules run again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from engine.clock import Clock
from engine.config.models import Schedule
from engine.problems import WARNING
from engine.schedule.occurrences import has_occurrences, site_zone

if TYPE_CHECKING:
    from engine.validation.rules import Catalog, Finding

CODE = "dates-past"


def site_dates(platform: Mapping[str, Any] | None, clock: Clock | None = None) -> dict[str, dt.date]:
    """Today's date in each site's time zone (sites whose zone is unknown are left out)."""
    sites = (platform or {}).get("sites")
    if not isinstance(sites, Mapping):
        return {}
    now = (clock or Clock()).now()
    found: dict[str, dt.date] = {}
    for key, site in sites.items():
        try:
            found[str(key)] = now.astimezone(site_zone(site["timezone"])).date()
        except Exception:  # noqa: BLE001 - an unknown or missing zone is another rule's finding
            continue
    return found


def context(dates: Mapping[str, dt.date]) -> str:
    """What the result cache must key ``dates-past`` findings by."""
    return "today:" + ",".join(f"{site}={day.isoformat()}" for site, day in sorted(dates.items()))


def _as_date(value: Any) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        return None


def _ever_delivers(schedule: Mapping[str, Any]) -> bool:
    try:
        return has_occurrences(Schedule.model_validate(schedule))
    except ValueError:
        return False  # another rule reports what is wrong with it


def findings(catalog: Catalog, dates: Mapping[str, dt.date]) -> Iterator[Finding]:
    """A warning on each task whose finish_date lies before today in its site: it will never
    deliver again. (A schedule that never delivers at all is ``no-occurrences``.)"""
    from engine.validation.rules import Finding

    for entry in catalog.valid("task"):
        task = entry.data or {}
        today = dates.get(str(task.get("site")))
        schedule = task.get("schedule") or {}
        finish = _as_date(schedule.get("finish_date"))
        start = _as_date(schedule.get("start_date"))
        if today is None or finish is None or finish >= today or (start is not None and finish < start):
            continue
        if not _ever_delivers(schedule):
            continue  # that is no-occurrences, whatever the date
        yield Finding(
            entry.source.path,
            ("schedule", "finish_date"),
            CODE,
            f"every date of this schedule is in the past (finish_date {finish.isoformat()} is before today, "
            f"{today.isoformat()} on site {task.get('site')!r}): it will never deliver; move its dates, "
            "or delete the file to complete the task",
            WARNING,
        )
