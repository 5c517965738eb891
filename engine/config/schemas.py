"""JSON Schemas (Draft 2020-12), generated from the pydantic models.

The models are the single source of truth. ``python -m engine.config.schemas --write``
regenerates ``schemas/<kind>.schema.json``; a test fails when a committed file drifts.
Validation uses these same generated schemas with ``jsonschema`` and its format checker.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path
from typing import Any

from pydantic.json_schema import GenerateJsonSchema

from engine.config.models import MODELS

DRAFT = "https://json-schema.org/draft/2020-12/schema"

DESCRIPTIONS = {
    "platform": "platform.yaml: sites, providers, policies, state and user directory",
    "template": "templates/<template-id>.yaml: a message template",
    "audience": "audiences/<audience-id>.yaml: who a task reaches",
    "creative": "creatives/<creative-id>.yaml: the text of a notification",
    "campaign": "campaigns/<campaign-id>/campaign.yaml: a campaign",
    "task": "campaigns/<campaign-id>/<task-id>.yaml: who gets which notification, on which channel, when",
}


class _Generator(GenerateJsonSchema):
    """Optional fields are simply absent in YAML, so ``null`` is not offered as a value."""

    def nullable_schema(self, schema: Any) -> dict[str, Any]:
        return self.generate_inner(schema["schema"])

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def _tidy(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _tidy(value) for key, value in node.items() if not (key == "default" and value is None)}
    if isinstance(node, list):
        return [_tidy(item) for item in node]
    return node


@cache
def schema_for(kind: str) -> dict[str, Any]:
    """The JSON Schema of one resource kind."""
    generated = MODELS[kind].model_json_schema(schema_generator=_Generator, by_alias=True)
    body = _tidy(generated)
    body.pop("title", None)
    return {"$schema": DRAFT, "title": kind, "description": DESCRIPTIONS[kind], **body}


def schema_text(kind: str) -> str:
    return json.dumps(schema_for(kind), indent=2, ensure_ascii=False) + "\n"


@cache
def validator_for(kind: str):
    """A compiled Draft 2020-12 validator, with the format checker, for one kind."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema_for(kind), format_checker=Draft202012Validator.FORMAT_CHECKER)


def write_schemas(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in MODELS:
        path = folder / f"{kind}.schema.json"
        path.write_text(schema_text(kind), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover - developer tool
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("schemas")
    if sys.argv[1:2] == ["--write"]:
        for path in write_schemas(target):
            print(f"wrote {path}")
    else:
        print("usage: python -m engine.config.schemas --write [FOLDER]")
