"""The shipped monitoring files (deploy/) and the PromQL they hold, for the deploy tests."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml
from repos import PROJECT

DEPLOY = PROJECT / "deploy"
DASHBOARD = DEPLOY / "grafana-dashboard.json"
ALERTS = DEPLOY / "prometheus-alerts.yml"
ALERT_TESTS = DEPLOY / "prometheus-alerts.test.yml"
PROMTOOL_LOCAL = PROJECT / ".tools" / "prometheus" / "usr" / "bin" / "promtool"
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$task": ".*", "$channel": ".*"}

METRIC = re.compile(r"\b(campaigns_[a-z_]+)\b")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")
LEGEND_LABEL = re.compile(r"\{\{\s*\$?labels\.([a-zA-Z_]+)\s*\}\}|\{\{\s*([a-zA-Z_]+)\s*\}\}")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def promtool() -> str:
    """promtool on PATH or unpacked by scripts/install-promtool.sh; skipped when absent (failed under CI)."""
    found = shutil.which("promtool") or (str(PROMTOOL_LOCAL) if PROMTOOL_LOCAL.exists() else None)
    if found is None:
        message = "promtool is not installed (sh scripts/install-promtool.sh)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return found


def dashboard_targets() -> list[tuple[str, dict]]:
    """(panel title, target) for every query of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target) for panel in dashboard["panels"] for target in panel.get("targets", [])]


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def as_promql(expr: str) -> str:
    """A dashboard query with Grafana's variables replaced, as Prometheus would receive it."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def metric_names(expr: str) -> set[str]:
    return set(METRIC.findall(expr))


def label_names(expr: str) -> set[str]:
    """Labels an expression groups, joins or matches on (``le`` included)."""
    found: set[str] = set()
    for group in GROUPING.findall(expr):
        found |= {name.strip() for name in group.split(",") if name.strip()}
    found |= set(MATCHER.findall(expr))
    return found


def legend_labels(text: str) -> set[str]:
    return {a or b for a, b in LEGEND_LABEL.findall(text)}


def write_recording_rules(path: Path, exprs: list[str]) -> Path:
    """Each expression as a recording rule, so ``promtool check rules`` parses it as PromQL."""
    rules = [{"record": f"dashboard:query_{number}", "expr": expr} for number, expr in enumerate(exprs)]
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, sort_keys=False))
    return path
