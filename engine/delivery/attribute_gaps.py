"""Which members of a task's audiences lack an attribute its creatives need, before delivery.

A creative that prints ``user.first_name`` without ``default(...)`` fails (``missing-variable``)
for every member without a first name. ``plan`` and ``test`` warn about it with how many: the
members are read as delivery reads them (``engine.delivery.audiences.task_members``: directory
attributes with CSV columns laid over them), all of them when the audience has at most
``SAMPLE_MEMBERS``, else the first ``SAMPLE_MEMBERS`` by user id, and the warning says it is a
sample. Never takes ``refresh: once`` snapshots.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.state import StateStore

SAMPLE_MEMBERS = 10_000
MISSING_ATTRIBUTE = "missing-attribute"


@dataclass(frozen=True)
class AttributeGap:
    """``missing`` of the ``checked`` members lack ``attribute``; ``total`` members in all (None
    when unknown). ``checked < total`` means the count is from a sample."""

    attribute: str
    missing: int
    checked: int
    total: int | None

    @property
    def sampled(self) -> bool:
        return self.total is None or self.checked < self.total

    def describe(self, used_by: Sequence[str] = ()) -> str:
        """One sentence for a marketer: how many, whether sampled, what happens to them."""
        where = f", which {_creatives(used_by)} without a default" if used_by else ""
        if not self.sampled:
            count = f"{self.missing:,} of {self.checked:,} member{'s' if self.checked != 1 else ''}"
        else:
            share = self.missing / self.checked if self.checked else 0
            of = f" of {self.total:,}" if self.total is not None else ""
            count = (
                f"{self.missing:,} of a sample of {self.checked:,} members (the first by user id{of}; "
                f"about {share:.0%})"
            )
        return (
            f"{count} lack {self.attribute}{where}: their messages will fail (missing-variable); "
            f"add `| default(...)` or fill the attribute in the user directory"
        )

    def to_wire(self) -> list[Any]:
        return [self.attribute, self.missing, self.checked, self.total]

    @classmethod
    def from_wire(cls, wire: Sequence[Any]) -> AttributeGap:
        return cls(str(wire[0]), int(wire[1]), int(wire[2]), None if wire[3] is None else int(wire[3]))


def _creatives(used_by: Sequence[str]) -> str:
    names = ", ".join(used_by)
    return f"creative {names} prints" if len(used_by) == 1 else f"creatives {names} print"


def _missing(value: Any) -> bool:
    return value is None or value == ""


def attribute_gaps(
    store: StateStore,
    task_id: str | None,
    task_body: Mapping[str, Any],
    audience_bodies: Mapping[str, Mapping[str, Any]],
    attributes: Sequence[str],
    *,
    attachments: Any = None,
    sample: int = SAMPLE_MEMBERS,
) -> list[AttributeGap]:
    """The attributes of ``attributes`` that some members lack (members read from ``store``, the
    directory). Raises what ``task_members`` raises when the audiences cannot be evaluated."""
    # here, not at the top: the planner and pilot tests import MISSING_ATTRIBUTE and AttributeGap
    # on paths that never read members (the plan's fast path loads no SQLAlchemy query code)
    from engine.delivery.audiences import audience_size, task_members

    if not attributes:
        return []
    missing = dict.fromkeys(attributes, 0)
    checked = 0
    batches = task_members(
        store, task_id or "", task_body, audience_bodies, snapshot=False, batch_size=min(sample, 5000), attachments=attachments
    )
    try:
        for batch in batches:
            for member in batch[: sample - checked]:
                values = member.attributes
                for name in attributes:
                    if _missing(values.get(name)):
                        missing[name] += 1
            checked += min(len(batch), sample - checked)
            if checked >= sample:
                break
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()
    total: int | None = checked
    if checked >= sample:
        total = audience_size(store, task_body, audience_bodies, task_id=task_id, attachments=attachments)
    return [AttributeGap(name, count, checked, total) for name, count in missing.items() if count]
