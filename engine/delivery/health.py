"""Can each running task be delivered at all? The second half of ``campaigns status``'s health
check (the first is ``report.executor_behind``: occurrences past their window not closed).

A running task cannot be delivered when the executor would stop on it before sending anything:
the applied platform or the task's stored definition is not valid (e.g. an unknown provider
type), its channel's provider cannot be opened (a gateway's token variable is not set), or its
audiences cannot be evaluated against the user directory (an attribute the directory lost, no
directory at all). Each check is the one the executor makes, run without sending, writing or
counting members, so ``status`` stays quick.

The provider check reads the environment of the process that runs ``status``: run the health
check where (and as whom) the executor runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from engine.config.models import Platform
from engine.delivery.audience_rules import AudienceError
from engine.delivery.audiences import check_task_audiences
from engine.delivery.directory import DirectoryError, directory_store
from engine.delivery.executor import task_run
from engine.delivery.providers import describe_provider
from engine.errors import CampaignsError

if TYPE_CHECKING:
    from engine.state import StateStore


@dataclass(frozen=True)
class Undeliverable:
    """A running task the executor cannot deliver, and why."""

    task: str
    problem: str

    def describe(self) -> str:
        return f"task {self.task} cannot be delivered: {self.problem}"

    def to_json(self) -> dict[str, str]:
        return {"task": self.task, "problem": self.problem}


def undeliverable(store: StateStore, base_dir: Path | str, *, env: Mapping[str, str] = os.environ) -> list[Undeliverable]:
    """The running tasks of the state that cannot be delivered, sorted by task id."""
    states = store.task_states()
    running = sorted(task_id for task_id, state in states.items() if state.status == "running")
    if not running:
        return []
    stored_platform = store.resource("platform")
    if stored_platform is None:
        return [Undeliverable(task_id, "no platform has been applied") for task_id in running]
    try:
        platform = Platform.model_validate(stored_platform.body)
    except ValidationError as problem:
        first = problem.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        why = f"the applied platform is not valid: {where}: {first['msg']}"
        return [Undeliverable(task_id, why) for task_id in running]

    tasks = store.resources(kind="task")
    creatives = {s.id: s.body for s in store.resources(kind="creative").values()}
    audiences = {s.id: s.body for s in store.resources(kind="audience").values()}
    found: list[Undeliverable] = []
    try:
        directory = directory_store(platform, store, base_dir)
    except (CampaignsError, OSError) as problem:
        return [Undeliverable(task_id, f"its user directory cannot be opened: {problem}") for task_id in running]
    try:
        for task_id in running:
            stored = tasks.get(f"task.{task_id}")
            if stored is None:
                found.append(Undeliverable(task_id, "it is running in the state but its definition is missing"))
                continue
            try:
                run = task_run(task_id, stored.body, platform, creatives, audiences, states[task_id].content_digest)
            except CampaignsError as problem:
                found.append(Undeliverable(task_id, str(problem).removeprefix(f"task {task_id}: ")))
                continue
            try:
                describe_provider(run.channel, platform, Path(base_dir), env=env)
            except CampaignsError as problem:
                found.append(Undeliverable(task_id, f"its {run.channel} provider is misconfigured: {problem}"))
            try:
                check_task_audiences(directory, task_id, run.body, run.audience_bodies)
            except (AudienceError, DirectoryError) as problem:
                found.append(Undeliverable(task_id, f"its audiences cannot be evaluated: {problem}"))
    finally:
        if directory is not store:
            directory.close()
    return found
