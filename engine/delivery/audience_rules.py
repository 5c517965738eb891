"""The rules of audience documents that need no database: what validation checks against the
user directory's attribute names, how a rule's value compares, and what an audience's source is.

No SQLAlchemy here: ``campaigns validate`` imports this module (``engine.validation.directory_check``).
The compiler (``engine.delivery.audience_compiler``) and membership (``engine.delivery.audiences``)
build on it.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.config.usercsv import parse_numeral
from engine.errors import CampaignsError

USER_ID = "user_id"


class AudienceError(CampaignsError):
    """An audience cannot be evaluated (unknown attribute, cycle, missing CSV, ...).
    ``audience_id`` names the audience the message is about (None: not known yet, e.g. a value
    checked before its audience is known)."""

    def __init__(self, message: str, *, audience_id: str | None = None) -> None:
        super().__init__(message)
        self.audience_id = audience_id

    @classmethod
    def about(cls, audience_id: str, detail: str) -> AudienceError:
        """``audience 'x': detail``, with the audience as a field."""
        return cls(f"audience {audience_id!r}: {detail}", audience_id=audience_id)


class MissingContent(AudienceError):
    """A CSV audience's content is neither in the state nor given by the caller."""


# -- attribute checks --------------------------------------------------------------------------


def audience_attribute_problems(audience_body: Mapping[str, Any], known: set[str]) -> list[tuple[tuple, str]]:
    """``(path, message)`` for each condition of the audience's own ``where`` rule that names an
    attribute the directory does not have. ``path`` locates the ``attr`` node in the audience
    document, e.g. ``("source", "where", "any", 0, "all", 1, "attr")``."""
    source = audience_body.get("source") if isinstance(audience_body, Mapping) else None
    where = source.get("where") if isinstance(source, Mapping) else None
    if not isinstance(where, Mapping):
        return []
    located: list[tuple[tuple, Any]] = []
    if isinstance(where.get("any"), list):
        for number, group in enumerate(where["any"]):
            if isinstance(group, Mapping) and isinstance(group.get("all"), list):
                for index, condition in enumerate(group["all"]):
                    located.append((("source", "where", "any", number, "all", index), condition))
    if isinstance(where.get("all"), list):
        for index, condition in enumerate(where["all"]):
            located.append((("source", "where", "all", index), condition))
    problems = []
    for path, condition in located:
        name = condition.get("attr") if isinstance(condition, Mapping) else None
        if isinstance(name, str) and name != USER_ID and name not in known:
            problems.append((path + ("attr",), unknown_attribute_message(name, known)))
    return problems


def check_audience_attributes(audience_body: Mapping[str, Any], known: set[str]) -> list[str]:
    """Messages for the conditions of the audience's ``where`` rule that name attributes the
    directory does not have (``known``: ``engine.delivery.directory.known_attributes``)."""
    return [message for _path, message in audience_attribute_problems(audience_body, known)]


def unknown_attribute_message(name: str, known: set[str]) -> str:
    hint = difflib.get_close_matches(name, sorted(known), n=1)
    names = sorted(known)
    shown = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
    text = f"the user directory has no attribute {name!r}"
    if hint:
        text += f" (did you mean {hint[0]!r}?)"
    return text + (f"; it has: {shown}" if names else "; it has none")


# -- values ------------------------------------------------------------------------------------


def operand(value: Any, *, text_only: bool = False) -> tuple[str, Any]:
    """``("number", n)`` or ``("text", s)``: how a rule's value compares (see
    ``engine.delivery.audiences``)."""
    if isinstance(value, bool):
        return "text", "true" if value else "false"
    if isinstance(value, (int, float)):
        if value != value:
            raise AudienceError("a rule compares with NaN, which equals nothing; use a number")
        if text_only:
            return "text", str(value) if isinstance(value, int) else repr(value)
        # compared as doubles on both backends (values have at most 15 digits: exact); an int
        # would also bind as a PostgreSQL INTEGER, which overflows past 2**31 and rounds 2.5 when
        # it types an IN list by its first element
        return "number", float(value)
    text = str(value)
    if not text_only:
        number = parse_numeral(text)
        if number is not None:
            return "number", float(number)
    return "text", text


# -- sources -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListSource:
    """A ``users:`` or ``csv:`` audience: its members are a list kept by content digest."""

    digest: str
    kind: str  # csv | users
    audience_id: str
    body: Mapping[str, Any]


def users_list_digest(user_ids: Sequence[str]) -> str:
    """Content digest of a ``users:`` list (order and repeats do not matter)."""
    text = "users\n" + "\n".join(sorted(set(user_ids)))
    return hashlib.sha256(text.encode()).hexdigest()


def source_of(audience_id: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
    source = body.get("source") if isinstance(body, Mapping) else None
    if not isinstance(source, Mapping):
        raise AudienceError(f"audience {audience_id!r} has no source", audience_id=audience_id)
    return source


def list_source(audience_id: str, body: Mapping[str, Any]) -> ListSource | None:
    """The audience's list, or None when its members are not a list (``where``, ``include``)."""
    source = source_of(audience_id, body)
    if "users" in source:
        return ListSource(users_list_digest(source["users"]), "users", audience_id, body)
    if "csv" in source:
        digest = body.get("csv_digest")
        if not isinstance(digest, str) or not digest:
            raise AudienceError.about(
                audience_id, f"its CSV ({source['csv']}) has no stored content digest; apply the repository first"
            )
        return ListSource(digest, "csv", audience_id, body)
    return None


def task_audiences(task_body: Mapping[str, Any]) -> list[str]:
    """The audiences a task names, each once, in its order."""
    audiences = task_body.get("audiences") if isinstance(task_body, Mapping) else None
    if not isinstance(audiences, list) or not audiences:
        raise AudienceError("the task names no audiences")
    return list(dict.fromkeys(audiences))
