"""``campaigns preview``: a page that shows every creative as the device shows it, and when it goes out.

- ``engine.preview.cards``: one creative rendered for one tester through delivery's render path,
  with its length limits, SMS segments, or the failure delivery would record;
- ``engine.preview.calendar``: a task's schedule as month grids in its site's zone;
- ``engine.preview.model``: the page as a value, from the repository, the state and the plan;
- ``engine.preview.render``: that value as one self-contained HTML file (Jinja2, autoescaped)
  and as a short text for a CI job summary.

``preview_repository(repo, state_url, ...)`` is the whole of ``campaigns preview`` below its
options; ``preview(repository, store, ...)`` the same for a loaded repository and an open store.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from engine.config.settings import resolve_state_url
from engine.plan.planner import compute_plan
from engine.preview.model import PreviewPage, build_page
from engine.preview.render import write
from engine.state import StateStore
from engine.validation.pipeline import load_repository

if TYPE_CHECKING:
    from engine.config.repository import Repository

__all__ = ["PreviewPage", "build_page", "preview", "preview_repository"]
DEFAULT_OUT = Path(".campaigns") / "preview"


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


def preview_repository(
    repo: Path,
    state_url: str | None = None,
    tasks: Sequence[str] = (),
    testers: Sequence[str] = (),
    *,
    out_dir: Path | None = None,
    now: dt.datetime | None = None,
    forecast_days: int | None = None,
) -> tuple[PreviewPage, Path]:
    """Validate the repository, preview it against its state (never written) and write the page
    to ``out_dir/index.html`` (default: ``.campaigns/preview/`` in the repository); the page and
    the file's path. Raises InvalidRepository when the repository does not validate."""
    repository = load_repository(repo, state=state_url)
    target_dir = out_dir if out_dir is not None else repo / DEFAULT_OUT
    # made first: on a fresh clone this is also the folder of the default SQLite state, which
    # then reads as empty (plan from empty) instead of "no such folder"
    target_dir.mkdir(parents=True, exist_ok=True)
    url = resolve_state_url(repo, state_url, platform=repository.platform.data)
    with StateStore.open(url, base_dir=repo, create=False, missing_ok=True) as store:
        page = preview(repository, store, tasks, testers, now=now, forecast_days=forecast_days)
    return page, write(page, target_dir)
