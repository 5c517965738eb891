"""Pilot tests (``campaigns test``): send a task's notifications to its testers, record the result.

For each tester and each creative of the task, the creative's texts are rendered with the
tester's user-directory attributes (or, for a tester the directory does not know, the template's
``example`` values) through ``engine.delivery.render`` -- the very code path, limits and checks
delivery uses -- and sent through the channel's provider as occurrence ``test``. Every run has
its own run id and so its own message ids: a provider that deduplicates by id never drops a
second test.
The run is recorded against the task's content digest (``engine.plan.desired``), which is what
``apply`` later checks before the task may run. A passing run moves a ``draft`` task to
``testing``. It works before the task was ever applied, e.g. on a pull-request branch.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.config.names import USER_ID_PATTERN
from engine.delivery.attribute_gaps import MISSING_ATTRIBUTE, AttributeGap
from engine.delivery.directory import lookup_users, open_directory
from engine.delivery.providers import Message, open_provider
from engine.delivery.render import RenderError, creative_text
from engine.errors import CampaignsError, UsageError
from engine.plan.desired import Desired
from engine.plan.planner import required_by, size_request
from engine.plan.source import gaps_from_directory
from engine.state import PilotResult

if TYPE_CHECKING:
    from engine.config.repository import Repository
    from engine.state import PilotTestRun, StateStore

TEST_OCCURRENCE = "test"
_USER_ID = re.compile(USER_ID_PATTERN)


def pilot_message_id(task_id: str, content_digest: str, tester: str, creative: str, run_id: str) -> str:
    """45 characters (at most 64): one message per (test run, task content, tester, creative), so
    each run sends new ids and a run's messages can be told apart from another run's."""
    key = f"{task_id}\0{TEST_OCCURRENCE}\0{content_digest}\0{tester}\0{creative}\0{run_id}".encode()
    return "test-" + hashlib.sha256(key).hexdigest()[:40]


def choose_testers(repository: Repository, task_id: str, explicit: Sequence[str] = ()) -> list[str]:
    """``--tester`` ids, else the task's ``testers``, else its site's; a UsageError when none."""
    task = repository.task(task_id)
    chosen = [t.strip() for t in explicit if t.strip()] if explicit else []
    if explicit and not chosen:
        raise UsageError("--tester needs a user id")
    for tester in chosen:
        if not _USER_ID.match(tester):
            raise UsageError(f"--tester {tester!r} is not a user id (1 to 32 characters, no spaces)")
    if not chosen:
        chosen = list(task.data.get("testers") or [])
    if not chosen:
        site = task.data["site"]
        chosen = list(repository.platform.data["sites"][site].get("testers") or [])
    if not chosen:
        raise UsageError(
            f"task {task_id!r} has no testers: pass --tester USER_ID, or list `testers` in the task "
            f"or on site {task.data['site']!r} in platform.yaml"
        )
    return list(dict.fromkeys(chosen))


def check_testers_known(repository: Repository, task_id: str, testers: Sequence[str], known: Mapping[str, Any]) -> None:
    """A tester must be a user of the directory or one of the site's ``testers``: a typo in a
    user id is an error, never a pilot test "passed" by sending to nobody."""
    site = repository.task(task_id).data["site"]
    site_testers = set(repository.platform.data["sites"][site].get("testers") or [])
    unknown = [tester for tester in testers if tester not in known and tester not in site_testers]
    if unknown:
        names = ", ".join(repr(tester) for tester in unknown)
        plural = "s" if len(unknown) != 1 else ""
        raise UsageError(
            f"tester{plural} {names} not found: neither in the user directory nor in site {site!r}'s testers "
            "(import them with `campaigns users import`, or list them under the site's `testers` in platform.yaml)"
        )


def directory_attributes(repository: Repository, store: StateStore, testers: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Testers' attributes from the user directory (``platform.yaml`` ``user_directory``, else the
    state); testers it does not know are absent."""
    with open_directory(repository.platform.model, store, repository.root) as directory:
        found = lookup_users(directory, list(testers))
    return {user_id: dict(attributes) for user_id, attributes in (found or {}).items()}


@dataclass(frozen=True)
class PilotSend:
    """One pilot notification: a creative for a tester, rendered and sent (or why not)."""

    tester: str
    creative: str
    message_id: str
    profile: str  # "directory" or "examples": where the personalisation came from
    passed: bool
    title: str | None = None
    content: str | None = None
    redirection: str | list[str] | None = None
    error: str | None = None
    reason: str | None = None  # why it failed, as the ledger would say (missing-variable, too-long, ...)

    def to_json(self) -> dict[str, Any]:
        return {
            "tester": self.tester,
            "creative": self.creative,
            "message_id": self.message_id,
            "profile": self.profile,
            "passed": self.passed,
            "title": self.title,
            "content": self.content,
            "redirection": self.redirection,
            "error": self.error,
        }

    def detail(self) -> str:
        if self.passed:
            return f"creative {self.creative}: sent as {self.message_id} ({self.profile})"
        return f"creative {self.creative}: {self.error}"


@dataclass(frozen=True)
class PilotOutcome:
    task_id: str
    channel: str
    content_digest: str
    sends: tuple[PilotSend, ...]
    run: PilotTestRun
    warnings: tuple[tuple[str, str], ...] = ()  # (code, message), e.g. missing-attribute

    @property
    def passed(self) -> bool:
        return self.run.passed

    def to_json(self) -> dict[str, Any]:
        """What ``campaigns test --format json`` prints."""
        return {
            "task": self.task_id,
            "channel": self.channel,
            "content_digest": self.content_digest,
            "run_id": self.run.run_id,
            "passed": self.passed,
            "warnings": [{"code": code, "message": message} for code, message in self.warnings],
            "messages": [send.to_json() for send in self.sends],
        }


def audience_warnings(repository: Repository, store: StateStore, task_id: str) -> list[tuple[str, str]]:
    """``missing-attribute`` warnings for the task's audiences, as ``plan`` gives them: members
    the directory knows without an attribute a creative prints without a default."""
    desired = Desired(repository)
    request = size_request(desired, {task_id: desired.body(f"task.{task_id}")})
    if not request.required:
        return []
    users = required_by(desired, task_id)
    return [
        (MISSING_ATTRIBUTE, gap.describe(users.get(gap.attribute, ())))
        for gap in map(AttributeGap.from_wire, gaps_from_directory(store, request).get(task_id, []))
    ]


def run_pilot_test(
    repository: Repository,
    store: StateStore,
    task_id: str,
    testers: Sequence[str] = (),
    *,
    now: dt.datetime | None = None,
    env: Mapping[str, str] = os.environ,
) -> PilotOutcome:
    """Render, send and record a pilot test of ``task_id``'s current content."""
    task = repository.task(task_id)
    chosen = choose_testers(repository, task_id, testers)
    desired = Desired(repository)
    digest = desired.task_content_digest(task_id)
    channel = task.data["channel"]
    known = directory_attributes(repository, store, chosen)
    check_testers_known(repository, task_id, chosen, known)
    platform = repository.platform.model
    run_id = str(uuid.uuid4())
    texts = {}
    for creative_id in desired.task_creatives(task_id):
        creative = repository.creatives[creative_id].data
        texts[creative_id] = creative_text(creative_id, creative, repository.templates[creative["template"]].data, channel, platform)

    sends: list[PilotSend] = []
    messages: list[Message] = []
    for tester in chosen:
        for creative_id in desired.task_creatives(task_id):
            creative = repository.creatives[creative_id].data
            template = repository.templates[creative["template"]].data
            if tester in known:
                user, profile = {**known[tester], "user_id": tester}, "directory"
            else:
                examples = {name: spec.get("example") for name, spec in (template.get("variables") or {}).items()}
                user, profile = {**examples, "user_id": tester}, "examples"
            message_id = pilot_message_id(task_id, digest, tester, creative_id, run_id)
            try:
                title, content, redirection = texts[creative_id].render(user)
            except RenderError as problem:  # fails this result, never the run
                error = f"{problem.reason}: {problem.detail}"
                sends.append(PilotSend(tester, creative_id, message_id, profile, False, error=error, reason=problem.reason))
                continue
            sends.append(PilotSend(tester, creative_id, message_id, profile, True, title, content, redirection))
            messages.append(
                Message(message_id, task_id, TEST_OCCURRENCE, tester, channel, creative_id, title, content, redirection)
            )

    if messages:
        with closing(open_provider(channel, platform, repository.root, env=env)) as provider:
            deliveries = {delivery.message_id: delivery for delivery in provider.send(messages)}
        for index, send in enumerate(sends):
            delivery = deliveries.get(send.message_id)
            if send.passed and (delivery is None or delivery.status != "sent"):
                reason = delivery.error if delivery is not None else "the provider did not answer for it"
                sends[index] = PilotSend(
                    send.tester, send.creative, send.message_id, send.profile, False,
                    send.title, send.content, send.redirection, error=f"not delivered: {reason}",
                )

    results = [PilotResult(send.tester, channel, send.passed, send.detail()) for send in sends]
    if not results:
        raise CampaignsError(f"task {task_id!r} has nothing to send")
    passed = all(send.passed for send in sends)
    run = store.record_pilot_test(task_id, digest, results, mark_testing=passed, now=now, run_id=run_id)
    try:
        warnings = tuple(audience_warnings(repository, store, task_id))
    except CampaignsError:  # the audiences cannot be evaluated here: plan and validate say why
        warnings = ()
    return PilotOutcome(task_id, channel, digest, tuple(sends), run, warnings)
