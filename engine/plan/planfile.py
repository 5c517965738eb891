"""Plan files: the JSON text of a plan with a checksum, saved atomically and read back with distrust.

What ``campaigns plan --format json`` prints and what ``--out FILE`` saves are the same text:
``Plan.to_json()`` (engine.plan.model) with a ``checksum`` (sha256 of the canonical JSON of
everything else) as its last key, so a plan edited by hand or cut short in transit is refused
instead of applied. Reading is bounded (``engine.jsonlimits``) and every way a file can be wrong
is one ``PlanFileError`` line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from engine import jsonlimits
from engine.errors import CampaignsError
from engine.plan.model import FORMAT_VERSION, PLAN_KIND, Plan
from engine.state.records import content_digest

PLAN_MAX_BYTES = 128 * jsonlimits.MiB
"""A saved plan of 10,000 changed tasks is about 25 MB; five times that is still a plan."""
PLAN_MAX_DEPTH = jsonlimits.DEFAULT_MAX_DEPTH


class PlanFileError(CampaignsError):
    """A saved plan cannot be used: unreadable, truncated, edited, or from another version."""


def as_document(plan: Plan) -> dict[str, Any]:
    """The plan's JSON document with its checksum (what is printed and saved)."""
    found = plan.to_json()
    found["checksum"] = checksum(found)
    return found


def checksum(document: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a plan document without its ``checksum`` key."""
    return content_digest({key: value for key, value in document.items() if key != "checksum"})


def dumps(plan: Plan) -> str:
    """The saved-plan text (also what ``--format json`` prints)."""
    return json.dumps(as_document(plan), ensure_ascii=False, separators=(",", ":")) + "\n"


def save(plan: Plan, path: Path) -> None:
    """Write the plan to ``path`` atomically (a crash never leaves half a plan under that name)."""
    path = Path(path)
    text = dumps(plan)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except OSError as problem:
        try:
            temporary.unlink()
        except OSError:
            pass
        raise CampaignsError(f"cannot write the plan to {path}: {problem.strerror}") from None


def load(path: Path) -> Plan:
    """Read a saved plan; PlanFileError (one clear line) when it cannot be trusted.

    At most ``PLAN_MAX_BYTES`` are read (the size is checked before reading)."""
    path = Path(path)
    try:
        raw = jsonlimits.read_limited(path, PLAN_MAX_BYTES, f"plan file {path}")
    except FileNotFoundError:
        raise PlanFileError(f"no plan file {path}") from None
    except OSError as problem:
        raise PlanFileError(f"cannot read the plan file {path}: {problem.strerror or problem}") from None
    except jsonlimits.JSONTooLarge as problem:
        raise PlanFileError(f"{problem}; it cannot be applied") from None
    return parse(raw, str(path))


def parse(raw: bytes, where: str = "plan") -> Plan:
    """The plan in ``raw``: bounded JSON (``engine.jsonlimits``), then its kind, version and checksum."""
    if not raw.strip():
        raise PlanFileError(f"plan file {where} is empty; make a new plan with `campaigns plan --out`")
    try:
        document = jsonlimits.loads(raw, what=f"plan file {where}", max_bytes=PLAN_MAX_BYTES, max_depth=PLAN_MAX_DEPTH)
    except (jsonlimits.JSONTooLarge, jsonlimits.JSONTooDeep) as problem:
        raise PlanFileError(f"{problem}; it cannot be applied") from None
    except jsonlimits.JSONNotText:
        raise PlanFileError(f"plan file {where} is not text (not a saved plan)") from None
    except jsonlimits.JSONInvalid as invalid:
        problem = invalid.decode_error
        if problem is None:  # NaN, an integer past Python's digit limit
            raise PlanFileError(f"{invalid}; it is not a saved plan") from None
        # A saved plan is one JSON object: cut anywhere, it no longer ends with its closing brace.
        ending = problem.pos >= len(problem.doc.rstrip()) - 1 or not raw.rstrip().endswith(b"}")
        what = "is truncated" if ending else f"is not valid JSON (line {problem.lineno}, column {problem.colno})"
        raise PlanFileError(
            f"plan file {where} {what}; it cannot be applied, make a new plan with `campaigns plan --out`"
        ) from None
    if not isinstance(document, dict) or document.get("kind") != PLAN_KIND:
        raise PlanFileError(f"{where} is not a saved campaigns plan")
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        raise PlanFileError(
            f"plan file {where} has format_version {version!r}; this campaigns reads version {FORMAT_VERSION}; "
            "make a new plan"
        )
    stored = document.get("checksum")
    if not isinstance(stored, str) or stored != checksum(document):
        raise PlanFileError(
            f"plan file {where} was modified after it was saved (checksum mismatch); "
            "a plan cannot be edited, make a new one with `campaigns plan --out`"
        )
    try:
        plan = Plan.from_json(document)
    except (KeyError, TypeError, ValueError) as problem:
        raise PlanFileError(f"plan file {where} is incomplete ({type(problem).__name__}: {problem})") from None
    return plan
