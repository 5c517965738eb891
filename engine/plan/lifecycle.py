"""The task lifecycle: which status a task ends in, and when that needs a pilot test.

Pure functions of four facts: the status its file asks for (``wanted``: ``active`` or
``paused``), the status the state holds (``before``; None for a task the state does not know),
whether its content (task, creatives, templates) changed since the last apply, and whether a
passing pilot test of its current content is recorded (``tested``). The planner and the no-op
fast path (``engine.plan.fastpath``) both decide with these, so the rules are written once:

- ``active``  -> ``running``. Needs a passing pilot test of exactly its current content unless it
  already ran with this very content (running, or paused and resumed unchanged).
- ``paused``  -> ``paused`` if it ever ran (running or paused); otherwise ``draft``, or
  ``testing`` once a pilot test of its content passed (a task already ``testing`` stays so while
  its content does not change).
- file deleted -> ``completed`` (``COMPLETED``); the stored task and its history are kept.
"""

from __future__ import annotations

ACTIVE = "active"
COMPLETED = "completed"
_RAN = ("running", "paused")


def target_status(wanted: str, before: str | None, changed: bool, tested: bool) -> str:
    """The status a task present in the repository ends in."""
    if wanted == ACTIVE:
        return "running"
    if before in _RAN:
        return "paused"
    if before == "testing" and not changed:
        return "testing"
    return "testing" if tested else "draft"


def needs_test(wanted: str, before: str | None, changed: bool) -> bool:
    """Whether reaching the target needs a passing pilot test of the current content
    (without one the change is blocked by ``needs-pilot-test``)."""
    return wanted == ACTIVE and not (before in _RAN and not changed)


def pilot_test_matters(wanted: str, before: str | None, changed: bool) -> bool:
    """Whether ``tested`` can change the outcome, so the pilot tests must be looked up (computing
    the content digest); when False, ``target_status`` and ``needs_test`` ignore it."""
    if wanted == ACTIVE:
        return needs_test(wanted, before, changed)
    return before not in _RAN and not (before == "testing" and not changed)


def settled(wanted: str, status: str) -> bool:
    """Whether a task in ``status`` whose content did not change is already where its file wants
    it (nothing to decide: the plan leaves it as it is)."""
    return status == "running" if wanted == ACTIVE else status in ("paused", "testing")
