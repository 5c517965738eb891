"""Evidence that an apply was approved: the merged pull request, or a named person and reason.

SPEC sections 1 and 5: the merge is the approval and the PR body is the reason to run. The
evidence is a GitHub ``pull_request`` event (``--event FILE`` or ``GITHUB_EVENT_PATH``) whose
pull request was merged into the main branch (and, with ``approval.forbid_self_merge``, not by
its own author), or ``--approved-by NAME --reason TEXT`` for other pipelines.

Whoever opens a pull request controls every file in it, ``platform.yaml`` included. So the
approval policy (``main_branch``, ``approval.*``) that judges a merge is the one already applied
in the state (``stored_policy``), never the one in the checkout being approved: a pull request
that sets ``forbid_self_merge: false`` or ``main_branch: develop`` is still judged by the stored
policy, and its new policy governs only the merges after it is applied.

Before anything was applied there is no stored policy, and the first apply is the one that
writes it. Taking the checkout's policy then would let a first pull request approve itself under
the rules it brings (``main_branch: develop`` and a self-merge into an unprotected branch), and
the defaults alone would let its author merge it. The first apply is therefore judged by the
strictest reading (``ApprovalPolicy.first_apply``): the pull request must be merged into the
repository's default branch as GitHub reports it in the event (``repository.default_branch``,
which only the repository's admins can change; ``main`` when the event does not say), and by
someone other than its author, whatever the checkout says. A team bootstrapping alone applies
the first change with ``--approved-by NAME --reason TEXT`` from a pipeline it trusts.

What an event must show, beyond that (a reviewer of an approval checks the same):
- ``action`` is ``closed``, ``merged`` is the JSON ``true`` and ``state`` is ``closed``;
- ``base.ref`` is exactly the main branch (a branch literally named ``refs/heads/main`` is not
  ``main``; ``main_branch`` in ``platform.yaml`` may be written either way);
- ``user.login`` and ``merged_by.login`` are non-empty logins; they compare case-insensitively,
  as GitHub logins do, and the same ``id`` on both is a self-merge whatever the logins say;
- the number is a positive integer (and the same in ``number`` and ``pull_request.number``) and
  ``merge_commit_sha`` a commit hash;
- the event is for one repository: ``pull_request.base.repo`` and ``repository`` agree, and both
  are ``GITHUB_REPOSITORY`` when that is set (as it is in GitHub Actions).

The event file is read bounded (``engine.jsonlimits``): at most ``EVENT_MAX_BYTES`` and
``jsonlimits.DEFAULT_MAX_DEPTH`` levels deep. Evidence is only looked at when there is something
to apply: an apply without changes needs none.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import jsonlimits
from engine.errors import CampaignsError, UsageError
from engine.state.records import Approval

if TYPE_CHECKING:
    from engine.state import StateStore

EVENT_ENV = "GITHUB_EVENT_PATH"
REPOSITORY_ENV = "GITHUB_REPOSITORY"
EVENT_MAX_BYTES = 8 * jsonlimits.MiB
"""GitHub's pull_request events are tens of KB (a PR body is at most 65,536 characters)."""

DEFAULT_BRANCH = "main"
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 or SHA-256 repositories
_LOGIN_MAX = 100
_PR_NUMBER_MAX = 2**31 - 1  # the history's integer column


class ApprovalRefused(CampaignsError):
    """The evidence given is no approval (unmerged PR, wrong branch, self-merge, unreadable event)."""


def _branch_name(value: str) -> str:
    """``refs/heads/main`` in platform.yaml means the branch ``main``."""
    return value[len("refs/heads/") :] if value.startswith("refs/heads/") else value


@dataclass(frozen=True)
class ApprovalPolicy:
    """The rules a merge is judged by. ``main_branch`` None: the repository's default branch."""

    main_branch: str | None = DEFAULT_BRANCH
    forbid_self_merge: bool = False
    first_apply: bool = False  # nothing applied yet: the strictest reading (module docstring)

    @classmethod
    def from_platform(cls, platform: Mapping[str, Any]) -> ApprovalPolicy:
        approval = platform.get("approval") or {}
        branch = platform.get("main_branch")
        return cls(
            main_branch=_branch_name(branch) if isinstance(branch, str) and branch else DEFAULT_BRANCH,
            forbid_self_merge=approval.get("forbid_self_merge", False) is True,
        )

    @classmethod
    def first(cls) -> ApprovalPolicy:
        """Before anything was applied: the default branch GitHub reports, and no self-merge."""
        return cls(main_branch=None, forbid_self_merge=True, first_apply=True)


def stored_policy(store: StateStore) -> ApprovalPolicy:
    """The policy of the applied ``platform`` resource (``ApprovalPolicy.first`` when none is)."""
    stored = store.resource("platform")
    if stored is None:
        return ApprovalPolicy.first()
    return ApprovalPolicy.from_platform(stored.body)


def read_event(path: Path | str) -> dict[str, Any]:
    """The JSON of a GitHub event file (ApprovalRefused when it cannot be read or is too big)."""
    what = f"the GitHub event file {path}"
    try:
        event = jsonlimits.read_file(path, what=what, max_bytes=EVENT_MAX_BYTES)
    except OSError as problem:
        raise ApprovalRefused(f"cannot read {what}: {problem.strerror or problem}") from None
    except jsonlimits.JSONLimitError as problem:
        raise ApprovalRefused(str(problem)) from None
    if not isinstance(event, dict):
        raise ApprovalRefused(f"{what} is not a GitHub event (not a JSON object)")
    return event


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _login(value: Any) -> str | None:
    """A GitHub login: a non-empty string without spaces or control characters."""
    login = value.get("login") if isinstance(value, dict) else None
    if not isinstance(login, str) or not login or len(login) > _LOGIN_MAX:
        return None
    if not login.isprintable() or any(character.isspace() for character in login):
        return None
    return login


def _user_id(value: Any) -> int | None:
    user_id = value.get("id") if isinstance(value, dict) else None
    return user_id if isinstance(user_id, int) and not isinstance(user_id, bool) else None


def _same_login(first: str, second: str) -> bool:
    return first.casefold() == second.casefold()


def _number(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= _PR_NUMBER_MAX:
        return value
    return None


def _repository(value: Any) -> str | None:
    name = value.get("full_name") if isinstance(value, dict) else None
    return name if isinstance(name, str) and name else None


def approval_from_event(
    event: Mapping[str, Any],
    policy: ApprovalPolicy,
    where: str = "the event",
    *,
    repository: str | None = None,
) -> Approval:
    """The Approval a ``pull_request`` event gives, or ApprovalRefused saying every reason it is none.

    ``repository`` (``owner/name``), when known, is the repository the event must be for."""
    pr = event.get("pull_request")
    if not isinstance(pr, dict):
        raise ApprovalRefused(
            f"{where} is not a pull_request event (it has no pull_request); "
            "apply needs the merged pull request's event, or --approved-by and --reason"
        )
    number = _number(pr.get("number"))
    name = f"pull request #{number}" if number is not None else "the pull request"
    problems: list[str] = []
    if number is None:
        problems.append(f"{where} does not give the pull request's number")
    elif "number" in event and _number(event.get("number")) != number:
        problems.append(f"{where} names two pull requests ({event.get('number')!r} and #{number})")

    action = event.get("action")
    merged = pr.get("merged") is True
    state = pr.get("state")
    if action != "closed":
        problems.append(f"{where} is a pull_request {action!r} event, not the one GitHub sends on the merge ('closed')")
    if not merged:
        problems.append(
            f"{name} was closed without being merged" if state == "closed" else f"{name} is {state or 'open'} and was not merged"
        )
    elif state != "closed":
        problems.append(f"{name} says it was merged, but its state is {state!r}, not 'closed'")

    problems.extend(_branch_problems(event, pr, policy, name))
    problems.extend(_repository_problems(event, pr, where, repository))

    author = _login(pr.get("user"))
    merged_by = _login(pr.get("merged_by"))
    if author is None:
        problems.append(f"{name} does not say who opened it (user.login is missing or empty)")
    if merged and merged_by is None:
        problems.append(f"{name} does not say who merged it (merged_by.login is missing or empty)")
    if author is not None and merged_by is not None:
        author_id, merger_id = _user_id(pr.get("user")), _user_id(pr.get("merged_by"))
        same = _same_login(author, merged_by) or (author_id is not None and author_id == merger_id)
        if same and policy.first_apply:
            problems.append(
                f"{name} was merged by its own author {author!r}; nothing has been applied yet, and the "
                "first apply, which sets the approval policy, needs a reviewer other than the author "
                "(or --approved-by NAME --reason TEXT)"
            )
        elif same and policy.forbid_self_merge:
            problems.append(
                f"{name} was merged by its own author {author!r}, and approval.forbid_self_merge forbids self-approval"
            )

    merge_commit = _text(pr.get("merge_commit_sha"))
    if merged and (merge_commit is None or not _COMMIT.fullmatch(merge_commit.lower())):
        problems.append(f"{name} does not name its merge commit (merge_commit_sha is not a commit hash)")

    body, title, url = _text(pr.get("body")), _text(pr.get("title")), _text(pr.get("html_url"))
    for key, value in (("body", body), ("title", title), ("html_url", url)):
        if value is not None and "\x00" in value:
            problems.append(f"{name}'s {key} contains a NUL character")
    if problems:
        raise ApprovalRefused("; ".join(problems) + ": that is no approval")
    assert merged_by is not None and merge_commit is not None
    return Approval(
        kind="github",
        approved_by=merged_by,
        reason=body or "",
        pr_number=number,
        author=author,
        merge_commit=merge_commit.lower(),
        pr_title=title,
        pr_url=url,
    )


def _branch_problems(event: Mapping[str, Any], pr: Mapping[str, Any], policy: ApprovalPolicy, name: str) -> list[str]:
    base = pr.get("base") if isinstance(pr.get("base"), dict) else {}
    base_ref = base.get("ref")
    if policy.main_branch is not None:
        if base_ref != policy.main_branch:
            return [f"{name} targets branch {base_ref!r}, not the main branch {policy.main_branch!r}"]
        return []
    repository = event.get("repository") if isinstance(event.get("repository"), dict) else {}
    default = repository.get("default_branch")
    default = default if isinstance(default, str) and default else DEFAULT_BRANCH
    if base_ref != default:
        return [
            f"{name} targets branch {base_ref!r}; nothing has been applied yet, so the first apply must be "
            f"merged into the repository's default branch {default!r} (platform.yaml's main_branch governs "
            "the merges after it)"
        ]
    return []


def _repository_problems(event: Mapping[str, Any], pr: Mapping[str, Any], where: str, expected: str | None) -> list[str]:
    base = pr.get("base") if isinstance(pr.get("base"), dict) else {}
    named = {found for found in (_repository(event.get("repository")), _repository(base.get("repo"))) if found}
    if len({found.casefold() for found in named}) > 1:
        return [f"{where} names two repositories ({', '.join(sorted(named))})"]
    if expected and any(found.casefold() != expected.casefold() for found in named):
        return [f"{where} is for the repository {sorted(named)[0]}, not {expected} ({REPOSITORY_ENV})"]
    if expected and not named:
        return [f"{where} does not say which repository it is for ({REPOSITORY_ENV} is {expected})"]
    return []


@dataclass(frozen=True)
class Evidence:
    """Where approval evidence comes from, resolved only when needed (``resolve``)."""

    event_path: str | None = None
    approved_by: str | None = None
    reason: str | None = None
    from_env: bool = False  # event_path came from GITHUB_EVENT_PATH
    repository: str | None = None  # GITHUB_REPOSITORY: the repository the event must be for
    event: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)  # read by ``from_options``

    @classmethod
    def from_options(
        cls,
        event: str | None,
        approved_by: str | None,
        reason: str | None,
        env: Mapping[str, str] = os.environ,
    ) -> Evidence:
        """Check the options now (usage errors are errors even when nothing is to apply).

        The event file is read now too, bounded: an unreadable, oversized or too deeply nested
        file is an error at once, before the repository is loaded. Whether the event approves
        anything is only judged when there is something to apply (``resolve``)."""
        approved_by = approved_by.strip() if approved_by else None
        reason = reason.strip() if reason else None
        if approved_by and not reason:
            raise UsageError("--approved-by needs --reason: the reason to run is recorded in the history")
        if reason and not approved_by:
            raise UsageError("--reason needs --approved-by: say who approved the change")
        if event and approved_by:
            raise UsageError("give either --event FILE or --approved-by/--reason, not both")
        repository = env.get(REPOSITORY_ENV, "").strip() or None
        if event:
            return cls(event_path=event, repository=repository, event=read_event(event))
        if approved_by:
            return cls(approved_by=approved_by, reason=reason)
        from_env = env.get(EVENT_ENV, "").strip()
        if from_env:
            return cls(event_path=from_env, from_env=True, repository=repository, event=read_event(from_env))
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
            event = self.event if self.event is not None else read_event(self.event_path)
            return approval_from_event(
                event, policy, where=f"the GitHub event {self.event_path}", repository=self.repository
            )
        return None
