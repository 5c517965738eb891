"""Finding the resource files of a repository and what kind of resource each one is.

Layout (SPEC section 2)::

    platform.yaml
    templates/<id>.yaml   audiences/<id>.yaml   creatives/<id>.yaml
    campaigns/<campaign-id>/campaign.yaml
    campaigns/<campaign-id>/<task-id>.yaml

A resource's id is its file name without ``.yaml``/``.yml``; ids are unique per kind
(task ids across all campaigns).

The file tree is the repository: a file or folder reached through a symbolic link that leaves the
repository is ``path-outside-repo`` and is not read, and a FIFO, socket, device, dangling link or
link loop is a one-line problem found with ``stat`` alone (nothing is ever opened to find out, so
a FIFO cannot block the command).
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from engine.config.names import ID_PATTERN
from engine.config.safefile import special_kind
from engine.errors import CampaignsError
from engine.problems import ERROR, WARNING, Problem

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


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _unreadable(path: str, message: str) -> Problem:
    return Problem(path, 1, 1, "yaml-syntax", message)


def link_problem(full: str, path: str, real_root: str, what: str = "file") -> Problem | None:
    """Why the file or folder at ``full`` (shown as ``path``) is not read: a link leaving the
    repository, a link loop, a dangling link -- or None when it stays inside (``stat`` only)."""
    try:
        real = os.path.realpath(full, strict=True)
    except OSError as bad:
        if bad.errno == errno.ELOOP:
            return _unreadable(path, f"this {what} is a symbolic link that loops; it is not read")
        if os.path.islink(full):
            return _unreadable(path, f"this {what} is a symbolic link to nothing; it is not read")
        return None  # gone meanwhile: reading it says so
    if not _inside(real, real_root):
        return Problem(
            path, 1, 1, "path-outside-repo", f"this {what} is a link to a {what} outside the repository; it is not read"
        )
    return None


def special_problem(full: str, path: str) -> Problem | None:
    """A problem when ``full`` is not a regular file (FIFO, socket, device), found by ``stat``."""
    try:
        mode = os.stat(full).st_mode
    except OSError as bad:
        return _unreadable(path, f"cannot read the file: {bad.strerror}")
    if stat.S_ISREG(mode):
        return None
    return _unreadable(path, f"this file is {special_kind(mode)}, not a regular file; it is not read")


def _folder(folder: Path, path: str, real_root: str, problems: list[Problem]) -> bool:
    """Whether the folder at ``folder`` is read: not when it is a link leaving the repository,
    a link loop, or something other than a folder (a problem says which)."""
    try:
        mode = os.lstat(folder).st_mode
    except FileNotFoundError:
        return False
    except OSError as bad:
        problems.append(_unreadable(path, f"cannot read the folder: {bad.strerror}"))
        return False
    if stat.S_ISLNK(mode):
        problem = link_problem(str(folder), path, real_root, "folder")
        if problem is not None:
            problems.append(problem)
            return False
        mode = os.stat(folder).st_mode
    if stat.S_ISDIR(mode):
        return True
    if not stat.S_ISREG(mode):
        problems.append(_unreadable(path, f"{path} is {special_kind(mode)}, not a folder; it is not read"))
    return False


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as listing:
            return sorted((entry for entry in listing if not entry.name.startswith(".")), key=lambda e: e.name)
    except OSError:  # missing, not a folder, or unreadable: nothing in it is read
        return []


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def unreadable_platform(root: Path) -> Problem | None:
    """Why the repository's platform file is not read (a link leaving the repository, a FIFO,
    a loop...), or None: commands that read its settings before validating say so, not block."""
    for name in PLATFORM_NAMES:
        full = os.path.join(root, name)
        if os.path.lexists(full):
            return link_problem(full, name, os.path.realpath(root)) or special_problem(full, name)
    return None


def platform_file(root: Path) -> str:
    """The name of the repository's platform file (one that exists, even if it is not readable:
    discovery says why it is not read)."""
    for name in PLATFORM_NAMES:
        if os.path.lexists(root / name):
            return name
    raise CampaignsError(
        f"{root} has no platform.yaml, so it is not a campaigns repository "
        "(run the command inside one, or pass --repo DIR)"
    )


def discover(root: Path) -> tuple[list[SourceFile], list[Problem]]:
    """Every resource file under ``root`` and the problems of where files are or how they are named."""
    problems: list[Problem] = []
    files: list[SourceFile] = []
    real_root = os.path.realpath(root)

    def readable(full: str, path: str) -> bool:
        problem = link_problem(full, path, real_root) or special_problem(full, path)
        if problem is not None:
            problems.append(problem)
        return problem is None

    platform = platform_file(root)
    if readable(str(root / platform), platform):
        files.append(SourceFile(platform, "platform", "platform"))

    def misplaced(path: str, message: str) -> None:
        problems.append(Problem(path, 1, 1, "invalid-id", message, WARNING))

    def add(entry: os.DirEntry, path: str, kind: str, stem: str, campaign: str | None = None) -> None:
        if not readable(entry.path, path):
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
        if not _folder(root / folder, folder, real_root, problems):
            continue
        for entry in _entries(root / folder):
            path = f"{folder}/{entry.name}"
            stem = _yaml_stem(entry.name)
            if _is_dir(entry):
                misplaced(path, f"folders inside {folder}/ are not read; put {kind} files directly in {folder}/")
            elif stem is not None:
                add(entry, path, kind, stem)

    campaign_entries = _entries(root / CAMPAIGNS) if _folder(root / CAMPAIGNS, CAMPAIGNS, real_root, problems) else []
    for campaign_entry in campaign_entries:
        campaign_path = f"{CAMPAIGNS}/{campaign_entry.name}"
        if campaign_entry.is_symlink():
            problem = link_problem(campaign_entry.path, campaign_path, real_root, "folder" if _is_dir(campaign_entry) else "file")
            if problem is not None:
                problems.append(problem)
                continue
        if not _is_dir(campaign_entry):
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
            if _is_dir(entry):
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
