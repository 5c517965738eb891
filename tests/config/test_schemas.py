"""The published JSON Schemas: generated from the models, valid Draft 2020-12, and in agreement."""

from __future__ import annotations

import copy
import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from repos import PROJECT

from engine.config import yamlload
from engine.config.models import MODELS
from engine.config.schemas import schema_for, schema_text, validator_for
from engine.validation.filecheck import _strict_model
from engine.validation.schema_check import number_findings, schema_findings

SCHEMAS = PROJECT / "schemas"
EXAMPLE_FILES = {
    "platform": ["platform.yaml"],
    "template": sorted(str(p.relative_to(PROJECT)) for p in (PROJECT / "templates").glob("*.yaml")),
    "audience": sorted(str(p.relative_to(PROJECT)) for p in (PROJECT / "audiences").glob("*.yaml")),
    "creative": sorted(str(p.relative_to(PROJECT)) for p in (PROJECT / "creatives").glob("*.yaml")),
    "campaign": sorted(str(p.relative_to(PROJECT)) for p in (PROJECT / "campaigns").glob("*/campaign.yaml")),
    "task": sorted(
        str(p.relative_to(PROJECT)) for p in (PROJECT / "campaigns").glob("*/*.yaml") if p.name != "campaign.yaml"
    ),
}


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_committed_schema_matches_its_model(kind):
    committed = (SCHEMAS / f"{kind}.schema.json").read_text(encoding="utf-8")
    assert committed == schema_text(kind), (
        f"schemas/{kind}.schema.json drifted from engine/config/models.py; "
        "run: python -m engine.config.schemas --write schemas"
    )


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_schema_is_draft_2020_12(kind):
    schema = json.loads((SCHEMAS / f"{kind}.schema.json").read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_schemas_pass_check_jsonschema_metaschema():
    executable = shutil.which("check-jsonschema") or str(Path(sys.executable).with_name("check-jsonschema"))
    result = subprocess.run(
        [executable, "--check-metaschema", *sorted(str(p) for p in SCHEMAS.glob("*.schema.json"))],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_validation_uses_the_format_checker():
    validator = validator_for("task")
    assert validator.format_checker is not None
    document = yamlload.to_json(yamlload.load((PROJECT / EXAMPLE_FILES["task"][0]).read_bytes()))
    document["schedule"]["start_date"] = "2026-02-30"  # a string that is not a date
    assert any(error.validator == "format" for error in validator.iter_errors(document))


@pytest.mark.parametrize("kind", sorted(EXAMPLE_FILES))
def test_example_files_carry_a_schema_modeline_and_validate(kind):
    for path in EXAMPLE_FILES[kind]:
        text = (PROJECT / path).read_text(encoding="utf-8")
        first = text.splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), path
        target = (PROJECT / path).parent / first.split("$schema=", 1)[1].strip()
        assert target.resolve() == (SCHEMAS / f"{kind}.schema.json").resolve(), path
        data = yamlload.load(text.encode())
        assert not list(validator_for(kind).iter_errors(yamlload.to_json(data))), path
        assert _strict_model(kind, data) is not None, f"{path} should take the fast path"


# -- the fast path must never accept what the schema rejects ----------------------------------

POOL = [
    None, "", "x", "ph", "UPPER", "a b", "x" * 70, "x" * 101, "18:00", "25:00", "2026-13-01", "2026-12-01",
    0, 1, -1, 32, 1.5, 2.0, True, False, [], ["a"], ["a", "a"], {}, {"x": 1},
    dt.date(2026, 12, 1), dt.datetime(2026, 12, 1, 10, 0), "monday", "last", "push", "approved", "https://x.y",
    "a\x1cb", "id\n", "PH Site", "u\x00", "x" * 33,
    float("inf"), float("-inf"), float("nan"), 10**400, 2**53 + 1, 1e300,
]


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, prefix + (index,))


def _parent(document, path):
    node = document
    for step in path[:-1]:
        node = node[step]
    return node


@st.composite
def mutated(draw):
    kind = draw(st.sampled_from(sorted(EXAMPLE_FILES)))
    path = draw(st.sampled_from(EXAMPLE_FILES[kind]))
    document = copy.deepcopy(yamlload.load((PROJECT / path).read_bytes()))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(document) if p]
        if not paths:
            break
        target = draw(st.sampled_from(paths))
        parent = _parent(document, target)
        action = draw(st.sampled_from(["set", "delete", "add-key", "duplicate"]))
        if action == "set":
            parent[target[-1]] = copy.deepcopy(draw(st.sampled_from(POOL)))
        elif action == "delete":
            del parent[target[-1]]
        elif action == "add-key" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["extra", "in_", "type", "every", "users", "exclude", "eq", "gt"]))] = copy.deepcopy(
                draw(st.sampled_from(POOL))
            )
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[target[-1]]))
    return kind, document


def _disagreement(kind, document) -> str | None:
    if _strict_model(kind, document) is None:
        # the other way round: what validation accepts, the engine's models load (plan builds them)
        if schema_findings(kind, yamlload.to_json(document)):
            return None
        try:
            MODELS[kind].model_validate(yamlload.to_json(document))
        except ValueError as refused:
            return f"validation accepted what the model refuses: {refused}"
        return None
    errors = list(validator_for(kind).iter_errors(yamlload.to_json(document)))
    numbers = list(number_findings(yamlload.to_json(document)))
    if errors or numbers:
        return f"fast path accepted what the schema rejects: {[e.message for e in errors] + [n.message for n in numbers]}"
    return None


def test_every_single_change_to_every_example_file_keeps_model_and_schema_in_agreement():
    """Exhaustive: each node of each example set to each pool value, deleted, or given a sibling."""
    checked = 0
    for kind, paths in EXAMPLE_FILES.items():
        for path in paths:
            original = yamlload.load((PROJECT / path).read_bytes())
            for target in [p for p in _paths(original) if p]:
                variants = []
                for value in POOL:
                    variants.append(("set", value))
                variants.append(("delete", None))
                for key in ("extra", "in_", "type", "every", "users", "exclude", "eq", "gt"):
                    variants.append(("add-key", key))
                for action, value in variants:
                    document = copy.deepcopy(original)
                    parent = _parent(document, target)
                    if action == "set":
                        parent[target[-1]] = copy.deepcopy(value)
                    elif action == "delete":
                        del parent[target[-1]]
                    elif isinstance(parent[target[-1]], dict):
                        parent[target[-1]][value] = "x"
                    else:
                        continue
                    problem = _disagreement(kind, document)
                    assert problem is None, f"{path}: {action} {target} {value!r}: {problem}"
                    checked += 1
    assert checked > 5000


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_what_the_models_accept_the_schema_accepts(case):
    kind, document = case
    assert _disagreement(kind, document) is None


def test_schema_for_is_a_plain_copyable_document():
    assert json.loads(json.dumps(schema_for("task")))["title"] == "task"
