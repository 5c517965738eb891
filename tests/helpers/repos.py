"""Campaigns repositories for tests, and shortcuts to plan, pilot-test and apply them.

Two ways to get a repository: :func:`example_repo` copies the shipped example (then ``write`` /
``edit`` change it), :class:`SmallRepo` writes a hand-made one file by file. Test modules import
this file by name (``tests/helpers`` is on pytest's ``pythonpath``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from engine.apply.applier import apply
from engine.apply.approval import Evidence
from engine.config.yamlload import load
from engine.plan.desired import Desired
from engine.plan.planner import compute_plan
from engine.state import PilotResult, StateStore
from engine.validation.pipeline import load_repository

PROJECT = Path(__file__).resolve().parents[2]
FIXTURES = PROJECT / "tests" / "fixtures" / "github"
MERGED = FIXTURES / "pull_request.closed.merged.json"
UNMERGED = FIXTURES / "pull_request.closed.unmerged.json"
MERGED_BY_AUTHOR = FIXTURES / "pull_request.closed.merged-by-author.json"
EXAMPLE_PARTS = ("platform.yaml", "templates", "audiences", "creatives", "campaigns", "schemas")
EXAMPLE_LIVE_NOW = "2026-12-01T00:00:00Z"  # before the example's tasks end: validate gives no dates-past warnings
EXAMPLE_ACTIVE = ("flash-sale-push", "flash-sale-sms", "weekly-points-inbox")

PLATFORM = """\
main_branch: main
sites:
  ph:
    name: Philippines wallet
    timezone: Asia/Manila
    channels: [push, sms]
    mini_programs: [shop]
    testers: [u-tester-1]
providers:
  default: {{type: outbox, path: .campaigns/outbox}}
approval:
  forbid_self_merge: {forbid}
"""

TEMPLATE = """\
name: Promo push
channel: push
status: {status}
fields:
  title: {{required: true, max_length: 80}}
  content: {{required: true, max_length: 200}}
  redirection: {{required: true, max_length: 2048}}
variables:
  first_name: {{example: Maria}}
  points: {{example: 120}}
"""

CREATIVE = """\
name: {name}
template: {template}
title: "{title}"
content: "{content}"
redirection: https://shop.example.com/{id}
"""

TASK = """\
name: {name}
site: ph
mini_program: shop
channel: push
schedule:
  start_date: {start}
  finish_date: {finish}
  windows:
    - {{start: "{window}", finish: "12:00"}}
    - {{start: "18:00", finish: "21:00"}}
  recurrence: {recurrence}
audiences: [{audiences}]
creatives: [{creatives}]
status: {status}
"""


def example_repo(target: Path) -> Path:
    """A copy of the shipped example repository at ``target`` (created)."""
    target.mkdir(parents=True, exist_ok=True)
    for part in EXAMPLE_PARTS:
        source = PROJECT / part
        if source.is_dir():
            shutil.copytree(source, target / part)
        else:
            shutil.copy2(source, target / part)
    return target


def write(root: Path, path: str, text: str) -> Path:
    """Write a file (creating folders); returns its path."""
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


def edit(root: Path, path: str, change: Callable[[dict[str, Any]], None]) -> None:
    """Load a YAML file, let ``change`` mutate the data, write it back (comments are lost)."""
    target = root / path
    data = load(target.read_bytes())
    change(data)
    target.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def task_yaml(
    *,
    name: str = "Test task",
    channel: str = "push",
    windows: str = '[{start: "09:00", finish: "11:30"}]',
    recurrence: str = "{type: daily, every: 1}",
    start: str = "2026-12-01",
    finish: str = "2026-12-31",
    audiences: str = "[new-users-ph]",
    creatives: str = "[flash-a]",
    extra: str = "",
) -> str:
    """A task file for the example's site ``ph`` (each part replaceable)."""
    return (
        f"name: {name}\nsite: ph\nmini_program: shop\nchannel: {channel}\n"
        f"schedule:\n  start_date: {start}\n  finish_date: {finish}\n  windows: {windows}\n"
        f"  recurrence: {recurrence}\n{extra}"
        f"audiences: {audiences}\ncreatives: {creatives}\n"
    )


class SmallRepo:
    """A hand-made repository with helpers to write, change and delete its files."""

    def __init__(self, root: Path, *, forbid_self_merge: bool = False) -> None:
        self.root = root
        self.write("platform.yaml", PLATFORM.format(forbid=str(forbid_self_merge).lower()))
        self.template("push-promo")
        self.write("audiences/everyone.yaml", "name: Everyone\nsite: ph\nsource:\n  users: [u-1, u-2, u-tester-1]\n")
        self.write("audiences/vips.yaml", "name: VIPs\nsite: ph\nsource:\n  csv: vips.csv\n")
        self.write("audiences/vips.csv", "user_id,first_name\nu-1,Ana\nu-9,Ben\n")
        self.write("campaigns/xmas/campaign.yaml", "name: Christmas\ndescription: Holiday promos\n")
        self.creative("flash-a", title="Hi {{ user.first_name }}", content="Half price today")
        self.task("flash-push", creatives="flash-a")

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def delete(self, relative: str) -> None:
        (self.root / relative).unlink()

    def template(self, template_id: str, status: str = "approved") -> None:
        self.write(f"templates/{template_id}.yaml", TEMPLATE.format(status=status))

    def creative(self, creative_id: str, *, title: str, content: str, template: str = "push-promo", name: str | None = None) -> None:
        self.write(
            f"creatives/{creative_id}.yaml",
            CREATIVE.format(name=name or f"Creative {creative_id}", template=template, title=title, content=content, id=creative_id),
        )

    def task(
        self,
        task_id: str,
        *,
        creatives: str = "flash-a",
        audiences: str = "everyone",
        status: str = "active",
        window: str = "09:00",
        start: str = "2027-01-04",
        finish: str = "2027-03-31",
        recurrence: str = "{type: daily, every: 2}",
        name: str | None = None,
        campaign: str = "xmas",
    ) -> None:
        self.write(
            f"campaigns/{campaign}/{task_id}.yaml",
            TASK.format(
                name=name or f"Task {task_id}",
                start=start,
                finish=finish,
                window=window,
                recurrence=recurrence,
                audiences=audiences,
                creatives=creatives,
                status=status,
            ),
        )

    def delete_task(self, task_id: str, campaign: str = "xmas") -> None:
        self.delete(f"campaigns/{campaign}/{task_id}.yaml")


def plan_of(root: Path, url: str, **kwargs):
    repository = load_repository(root)
    with StateStore.open(url, root) as store:
        return compute_plan(repository, store, **kwargs)


def record_pass(root: Path, url: str, *task_ids: str) -> None:
    """Record a passing pilot test of each task's current content (all tasks when none named)."""
    repository = load_repository(root)
    desired = Desired(repository)
    with StateStore.open(url, root) as store:
        for task_id in task_ids or tuple(repository.tasks):
            channel = repository.tasks[task_id].data["channel"]
            store.record_pilot_test(
                task_id, desired.task_content_digest(task_id), [PilotResult("u-tester-1", channel, True, "ok")]
            )


def record_fail(root: Path, url: str, task_id: str) -> None:
    repository = load_repository(root)
    with StateStore.open(url, root) as store:
        store.record_pilot_test(
            task_id,
            Desired(repository).task_content_digest(task_id),
            [PilotResult("u-tester-1", "push", False, "render failed")],
        )


def apply_now(root: Path, url: str, *, who: str = "reviewer", reason: str = "go", saved=None, **kwargs):
    repository = load_repository(root)
    with StateStore.open(url, root) as store:
        return apply(
            repository, store, evidence=Evidence(approved_by=who, reason=reason), saved=saved, **kwargs
        )


def campaigns(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``campaigns`` as a separate process (``python -m engine``)."""
    environment = {**os.environ, **(env or {})}
    environment.pop("GITHUB_EVENT_PATH", None) if env is None or "GITHUB_EVENT_PATH" not in env else None
    environment.pop("CAMPAIGNS_STATE", None) if env is None or "CAMPAIGNS_STATE" not in env else None
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
