"""deploy/prometheus-alerts.yml and deploy/grafana-dashboard.json pass promtool: the rules check,
their unit tests (prometheus-alerts.test.yml) pass, and every dashboard query parses as PromQL.
promtool comes from Debian's prometheus package (scripts/install-promtool.sh); under CI=true a
missing promtool fails instead of skipping."""

from __future__ import annotations

import subprocess
from pathlib import Path

from deploy_files import ALERT_TESTS, ALERTS, alert_rules, as_promql, dashboard_targets, promtool, write_recording_rules


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120)


def test_alert_rules_pass_promtool_check() -> None:
    result = _promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_the_alerts_fire_when_they_should_and_only_then() -> None:
    """Behind for two minutes; one failure reason above 5 % (not the one below); no pass in five
    minutes while nothing is sent (not during a long pass that sends); no metrics at all."""
    result = _promtool("test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_alerts_named_in_the_brief_are_there() -> None:
    assert {rule["alert"] for rule in alert_rules()} == {"CampaignsExecutorBehind", "CampaignsDeliveryFailures", "CampaignsNoPass"}


def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    """The check is not vacuous: a query that does not parse fails it."""
    broken = write_recording_rules(tmp_path / "broken.yml", ["sum by (reason (rate(campaigns_messages_failed_total[5m]))"])
    assert _promtool("check", "rules", str(broken)).returncode != 0


def test_every_dashboard_query_parses_as_promql(tmp_path: Path) -> None:
    exprs = [as_promql(target["expr"]) for _title, target in dashboard_targets()]
    rules = write_recording_rules(tmp_path / "dashboard-queries.yml", exprs)
    result = _promtool("check", "rules", str(rules))
    assert result.returncode == 0, result.stdout + result.stderr
