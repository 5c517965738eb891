"""Evidence that an apply was approved: the merged pull request, or a named person and reason.

SPEC section 1: the merge is the approval and the PR body is the reason to run. The evidence is
a GitHub ``pull_request`` event (``--event FILE`` or ``GITHUB_EVENT_PATH``) whose pull request
was merged into ``platform.yaml``'s ``main_branch`` (and, with ``approval.forbid_self_merge``,
not by its own author), or ``--approved-by NAME --reason TEXT`` for other pipelines.

Evidence is only looked at when there is something to apply: an apply without changes needs none.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import CampaignsError, UsageError
from engine.state.records import Approval

EVENT_ENV = "GITHUB_EVENT_PATH"


class ApprovalRefused(CampaignsError):
    """The evidence given is no approval (unmerged PR, wrong branch, self-merge, unreadable event)."""


@dataclass(frozen=True)
class ApprovalPolicy:
    main_branch: str = "main"
    forbid_self_merge: bool = False

    @classmethod
    def from_platform(cls, platform: Mapping[str, Any]) -> ApprovalPolicy:
        approval = platform.get("approval") or {}
        return cls(
            main_branch=str(platform.get("main_branch") or "main"),
            forbid_self_merge=bool(approval.get("forbid_self_merge", False)),
        )


def read_event(path: Path | str) -> dict[str, Any]:
    """The JSON of a GitHub event file (ApprovalRefused when it cannot be read)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as problem:
        raise ApprovalRefused(f"cannot read the GitHub event file {path}: {problem.strerror}") from None
    try:
        event = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as problem:
        raise ApprovalRefused(f"the GitHub event file {path} is not valid JSON: {problem}") from None
    if not isinstance(event, dict):
        raise ApprovalRefused(f"the GitHub event file {path} is not a GitHub event (not a JSON object)")
    return event


def _login(value: Any) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("login"), str):
        return value["login"]
    return None


def approval_from_event(event: Mapping[str, Any], policy: ApprovalPolicy, where: str = "the event") -> Approval:
    """The Approval a ``pull_request`` event gives, or ApprovalRefused saying why it is none."""
    pr = event.get("pull_request")
    if not isinstance(pr, dict):
        raise ApprovalRefused(
            f"{where} is not a pull_request event (it has no pull_request); "
            "apply needs the merged pull request's event, or --approved-by and --reason"
        )
    number = pr.get("number") if isinstance(pr.get("number"), int) else event.get("number")
    name = f"pull request #{number}" if number is not None else "the pull request"
    problems: list[str] = []
    if pr.get("merged") is not True:
        state = pr.get("state") or "open"
        problems.append(
            f"{name} is {state} and was not merged" if state != "closed" else f"{name} was closed without being merged"
        )
    base = pr.get("base") if isinstance(pr.get("base"), dict) else {}
    base_ref = base.get("ref")
    if base_ref != policy.main_branch:
        problems.append(f"{name} targets branch {base_ref!r}, not the main branch {policy.main_branch!r}")
    author = _login(pr.get("user"))
    merged_by = _login(pr.get("merged_by"))
    if pr.get("merged") is True and merged_by is None:
        problems.append(f"{name} does not say who merged it (merged_by)")
    if policy.forbid_self_merge and merged_by is not None and merged_by == author:
        problems.append(
            f"{name} was merged by its own author {author!r}, and approval.forbid_self_merge forbids self-approval"
        )
    if problems:
        raise ApprovalRefused("; ".join(problems) + ": that is no approval")
    body = pr.get("body")
    return Approval(
        kind="github",
        approved_by=merged_by or "",
        reason=body if isinstance(body, str) else "",
        pr_number=number if isinstance(number, int) else None,
        author=author,
        merge_commit=pr.get("merge_commit_sha") if isinstance(pr.get("merge_commit_sha"), str) else None,
        pr_title=pr.get("title") if isinstance(pr.get("title"), str) else None,
        pr_url=pr.get("html_url") if isinstance(pr.get("html_url"), str) else None,
    )


@dataclass(frozen=True)
class Evidence:
    """Where approval evidence comes from, resolved only when needed (``resolve``)."""

    event_path: str | None = None
    approved_by: str | None = None
    reason: str | None = None
    from_env: bool = False  # event_path came from GITHUB_EVENT_PATH

    @classmethod
    def from_options(
        cls,
        event: str | None,
        approved_by: str | None,
        reason: str | None,
        env: Mapping[str, str] = os.environ,
    ) -> Evidence:
        """Check the options now (usage errors are errors even when nothing is to apply)."""
        approved_by = approved_by.strip() if approved_by else None
        reason = reason.strip() if reason else None
        if approved_by and not reason:
            raise UsageError("--approved-by needs --reason: the reason to run is recorded in the history")
        if reason and not approved_by:
            raise UsageError("--reason needs --approved-by: say who approved the change")
        if event and approved_by:
            raise UsageError("give either --event FILE or --approved-by/--reason, not both")
        if event:
            return cls(event_path=event)
        if approved_by:
            return cls(approved_by=approved_by, reason=reason)
        from_env = env.get(EVENT_ENV, "").strip()
        if from_env:
            return cls(event_path=from_env, from_env=True)
        return cls()

    def describe(self) -> str:
        if self.approved_by:
            return f"--approved-by {self.approved_by}"
        if self.event_path:
            return f"the GitHub event {self.event_path}" + (f" ({EVENT_ENV})" if self.from_env else "")
        return "no evidence"

    def resolve(self, policy: ApprovalPolicy) -> Approval | None:
        """The Approval, None when no evidence was given, ApprovalRefused when it is no approval."""
        if self.approved_by:
            return Approval(kind="manual", approved_by=self.approved_by, reason=self.reason or "")
        if self.event_path:
            event = read_event(self.event_path)
            return approval_from_event(event, policy, where=f"the GitHub event {self.event_path}")
        return None
