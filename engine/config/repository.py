"""The desired state: every resource of a repository, loaded and validated.

A :class:`Repository` is what ``plan``, ``test`` and ``schedule`` work from. It is only
ever built from a repository that validates; :func:`load_repository` raises
:class:`InvalidRepository` (carrying every problem) otherwise.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from engine.config.models import MODELS
from engine.errors import CampaignsError

KINDS = ("platform", "template", "audience", "creative", "campaign", "task")


@dataclass(eq=False)
class Resource:
    """One resource as written in the repository (``data`` is its JSON view)."""

    kind: str
    id: str
    path: str  # relative to the repository root
    data: dict[str, Any]
    digest: str  # digest of the file's bytes
    campaign: str | None = None  # tasks: the campaign folder they live in
    attachments: dict[str, str] = field(default_factory=dict)  # files it refers to: path -> digest

    @property
    def address(self) -> str:
        return "platform" if self.kind == "platform" else f"{self.kind}.{self.id}"

    @cached_property
    def model(self) -> Any:
        """The typed, immutable pydantic model (built on first use)."""
        return MODELS[self.kind].model_validate(self.data)


@dataclass(eq=False)
class Repository:
    root: Path
    platform: Resource
    templates: dict[str, Resource]
    audiences: dict[str, Resource]
    creatives: dict[str, Resource]
    campaigns: dict[str, Resource]
    tasks: dict[str, Resource]

    def by_kind(self, kind: str) -> dict[str, Resource]:
        if kind == "platform":
            return {"platform": self.platform}
        return {
            "template": self.templates,
            "audience": self.audiences,
            "creative": self.creatives,
            "campaign": self.campaigns,
            "task": self.tasks,
        }[kind]

    def resources(self) -> Iterator[Resource]:
        for kind in KINDS:
            yield from self.by_kind(kind).values()

    def get(self, address: str) -> Resource | None:
        if address == "platform":
            return self.platform
        kind, _, rid = address.partition(".")
        return self.by_kind(kind).get(rid) if kind in KINDS else None

    def task(self, task_id: str) -> Resource:
        try:
            return self.tasks[task_id]
        except KeyError:
            hint = difflib.get_close_matches(task_id, list(self.tasks), n=1)
            raise CampaignsError(
                f"no task {task_id!r} in {self.root}" + (f"; did you mean {hint[0]!r}?" if hint else "")
            ) from None

    def site_timezone(self, task_id: str) -> str:
        task = self.task(task_id)
        return self.platform.data["sites"][task.data["site"]]["timezone"]

    @cached_property
    def digest(self) -> str:
        """Content digest of everything the repository defines (changes when any file changes)."""
        hasher = hashlib.sha256()
        for resource in sorted(self.resources(), key=lambda r: r.path):
            hasher.update(f"{resource.path}\0{resource.digest}\n".encode())
            for path, digest in sorted(resource.attachments.items()):
                hasher.update(f"{path}\0{digest}\n".encode())
        return hasher.hexdigest()
