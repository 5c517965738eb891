"""``campaigns preview``: a page that shows every creative as the device shows it, and when it goes out.

- ``engine.preview.cards``: one creative rendered for one tester through delivery's render path,
  with its length limits, SMS segments, or the failure delivery would record;
- ``engine.preview.calendar``: a task's schedule as month grids in its site's zone;
- ``engine.preview.model``: the page as a value, from the repository, the state and the plan;
- ``engine.preview.render``: that value as one self-contained HTML file (Jinja2, autoescaped)
  and as a short text for a CI job summary.

``preview(repository, store, ...)`` is the whole thing for the command line.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from engine.plan.planner import compute_plan
from engine.preview.model import PreviewPage, build_page

if TYPE_CHECKING:
    from engine.config.repository import Repository
    from engine.state import StateStore

__all__ = ["PreviewPage", "build_page", "preview"]


def preview(
    repository: Repository,
    store: StateStore,
    tasks: Sequence[str] = (),
    testers: Sequence[str] = (),
    *,
    now: dt.datetime | None = None,
    forecast_days: int | None = None,
) -> PreviewPage:
    """Plan the repository against ``store`` (read only) and build the page from that plan
    (``forecast_days``: the plan's ``--forecast-days``, default its own)."""
    options = {} if forecast_days is None else {"forecast_days": forecast_days}
    plan = compute_plan(repository, store, now=now, **options)
    return build_page(repository, store, plan.to_json(), tasks, testers, now=now)
