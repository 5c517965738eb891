"""Finding the resource files of a repository and what kind of resource each one is.

Layout (SPEC section 2)::

    platform.yaml
    templates/<id>.yaml   audiences/<id>.yaml   creatives/<id>.yaml
    campaigns/<campaign-id>/campaign.yaml
    campaigns/<campaign-id>/<task-id>.yaml

A resource's id is its file name without ``.yaml``/``.yml``; ids are unique per kind
(task ids across all campaigns).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from engine.config.names import ID_PATTERN
from engine.errors import CampaignsError
from engine.validation.problems import ERROR, WARNING, Problem

FLAT_FOLDERS = {"templates": "template", "audiences": "audience", "creatives": "creative"}
CAMPAIGNS = "campaigns"
CAMPAIGN_FILE = "campaign"
PLATFORM_NAMES = ("platform.yaml", "platform.yml")
YAML_SUFFIXES = (".yaml", ".yml")
_ID = re.compile(ID_PATTERN)


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One resource file: where it is and what it defines."""

    path: str  # relative to the repository root, "/"-separated
    kind: str
    id: str
    campaign: str | None = None  # for tasks and campaigns: the campaign folder

    @property
    def address(self) -> str:
        return "platform" if self.kind == "platform" else f"{self.kind}.{self.id}"


def _yaml_stem(name: str) -> str | None:
    for suffix in YAML_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as listing:
            return sorted((entry for entry in listing if not entry.name.startswith(".")), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        return []


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def platform_file(root: Path) -> str:
    for name in PLATFORM_NAMES:
        if (root / name).is_file():
            return name
    raise CampaignsError(
        f"{root} has no platform.yaml, so it is not a campaigns repository "
        "(run the command inside one, or pass --repo DIR)"
    )


def discover(root: Path) -> tuple[list[SourceFile], list[Problem]]:
    """Every resource file under ``root`` and the problems of where files are or how they are named."""
    problems: list[Problem] = []
    files: list[SourceFile] = [SourceFile(platform_file(root), "platform", "platform")]

    def misplaced(path: str, message: str) -> None:
        problems.append(Problem(path, 1, 1, "invalid-id", message, WARNING))

    real_root = os.path.realpath(root)

    def add(entry: os.DirEntry, path: str, kind: str, stem: str, campaign: str | None = None) -> None:
        if entry.is_symlink() and not _inside(os.path.realpath(entry.path), real_root):
            problems.append(
                Problem(path, 1, 1, "path-outside-repo", "this file is a link to a file outside the repository; it is not read")
            )
            return
        if not _ID.match(stem):
            problems.append(
                Problem(
                    path,
                    1,
                    1,
                    "invalid-id",
                    f"{stem!r} is not a valid {kind} id: use lowercase letters, digits and '-', "
                    "starting with a letter or digit, at most 63 characters",
                    ERROR,
                )
            )
            return
        files.append(SourceFile(path, kind, stem, campaign))

    for folder, kind in FLAT_FOLDERS.items():
        for entry in _entries(root / folder):
            path = f"{folder}/{entry.name}"
            stem = _yaml_stem(entry.name)
            if entry.is_dir():
                misplaced(path, f"folders inside {folder}/ are not read; put {kind} files directly in {folder}/")
            elif stem is not None:
                add(entry, path, kind, stem)

    for campaign_entry in _entries(root / CAMPAIGNS):
        campaign_path = f"{CAMPAIGNS}/{campaign_entry.name}"
        if not campaign_entry.is_dir():
            if _yaml_stem(campaign_entry.name) is not None:
                misplaced(
                    campaign_path,
                    "tasks live in campaigns/<campaign-id>/<task-id>.yaml and a campaign in "
                    "campaigns/<campaign-id>/campaign.yaml; this file is not read",
                )
            continue
        campaign = campaign_entry.name
        campaign_ok = bool(_ID.match(campaign))
        if not campaign_ok:
            problems.append(
                Problem(
                    campaign_path,
                    1,
                    1,
                    "invalid-id",
                    f"campaign folder {campaign!r} is not a valid id: use lowercase letters, digits and '-'",
                )
            )
            continue
        for entry in _entries(root / CAMPAIGNS / campaign):
            path = f"{campaign_path}/{entry.name}"
            stem = _yaml_stem(entry.name)
            if entry.is_dir():
                misplaced(path, "folders inside a campaign are not read; put task files directly in the campaign folder")
            elif stem == CAMPAIGN_FILE:
                add(entry, path, "campaign", campaign, campaign)
            elif stem is not None:
                add(entry, path, "task", stem, campaign)

    problems.extend(_duplicates(files))
    return files, problems


def _duplicates(files: list[SourceFile]) -> list[Problem]:
    first: dict[tuple[str, str], SourceFile] = {}
    problems = []
    for source in files:
        key = (source.kind, source.id)
        if key in first:
            problems.append(
                Problem(
                    source.path,
                    1,
                    1,
                    "invalid-id",
                    f"{source.kind} id {source.id!r} is already defined in {first[key].path}; ids must be unique",
                )
            )
        else:
            first[key] = source
    return problems
