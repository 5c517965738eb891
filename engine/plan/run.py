"""``plan_repository``: the whole of ``campaigns plan`` below its options and its output.

It picks the state reader (a forked one when the platform can fork, so the state is read on
another core while this process reads the repository), answers from the no-op fast path when no
file changed since a plan that found nothing to do (``engine.plan.fastpath``), and otherwise
validates the repository and plans it, with its impact and cap forecast. It never writes to the
state: a state that does not exist yet is planned against as empty.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from engine.config.settings import resolve_state_url
from engine.plan import fastpath
from engine.plan.impact import DEFAULT_FORECAST_DAYS
from engine.plan.model import Plan
from engine.plan.planner import compute_plan
from engine.plan.source import ForkedSource, LocalSource, StateSource, can_fork
from engine.validation.filecheck import gc_paused
from engine.validation.pipeline import load_repository, read_files


def plan_repository(
    repo: Path,
    state_url: str | None = None,
    *,
    now: dt.datetime | None = None,
    forecast_days: int = DEFAULT_FORECAST_DAYS,
) -> Plan:
    """The plan of the repository at ``repo`` against its state (``state_url``: ``--state``,
    else the repository's own). Raises InvalidRepository when the repository does not validate."""
    url = resolve_state_url(repo, state_url)
    store = None
    # builds many objects and no cycles worth collecting: the collector waits until the end
    with gc_paused():
        source: StateSource
        if can_fork():  # read the state on another core while this one reads the repository
            source = ForkedSource.start(url, repo, create=False)
        else:
            from engine.state import StateStore  # SQLAlchemy (0.3 s): the forked reader imports it on its own core

            store = StateStore.open(url, base_dir=repo, create=False, missing_ok=True)
            source = LocalSource(store)
        try:
            files = read_files(repo)
            summary = fastpath.remembered(files)  # no file changed since a plan that found nothing to do?
            result = fastpath.noop_plan(summary, source)
            if result is None:
                repository = load_repository(repo, state=state_url, files=files)
                result = compute_plan(repository, source, now=now, forecast_days=forecast_days)
        finally:
            source.close()
            if store is not None:
                store.close()
    return result
