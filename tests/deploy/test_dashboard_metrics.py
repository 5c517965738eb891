"""Every metric and label the Grafana dashboard and the alert rules use is one that
``campaigns run --metrics-addr`` really exports, with ``--workers 2``: the names and labels come
from a scrape of the running service after a fan-out with failures, not from a list in the code."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from delivery_state import SERVICE_NOW, import_users, outbox_lines, platform_body, seed, service_task, write_users
from deploy_files import alert_rules, dashboard_targets, label_names, legend_labels, metric_names
from prometheus_client.parser import text_string_to_metric_families

from engine.state import StateStore

USERS = 60
MISSING_NAME = {5, 17, 33}  # rendered without first_name: failed, missing-variable
OPTED_OUT = {8: "push"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def scrape(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Sample name -> its label names, from /metrics of a 2-worker service during and after a fan-out."""
    repo = tmp_path_factory.mktemp("metrics-repo")
    write_users(repo / "users.csv", USERS, opt_out=OPTED_OUT, missing_name=MISSING_NAME)
    store = StateStore.open(f"sqlite:///{repo}/.campaigns/state.db", repo)
    try:
        import_users(store, repo / "users.csv")
        task = service_task()
        seed(store, platform=platform_body(outbox=".campaigns/outbox", batch_size=10, rates={"push": 40}), tasks={"t1": task})
    finally:
        store.close()
    port = _free_port()
    service = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", "--now", SERVICE_NOW, "--repo", str(repo), "--interval", "0.2", "--log", "json",
         "--metrics-addr", f"127.0.0.1:{port}", "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ},
    )
    expected_sent = USERS - len(MISSING_NAME) - len(OPTED_OUT)
    found: dict[str, set[str]] = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # scraped during the fan-out (pending) and after it
            time.sleep(0.1)
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except httpx.HTTPError:
                continue
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    found.setdefault(sample.name, set()).update(sample.labels)
            done = len(outbox_lines(repo / ".campaigns" / "outbox")) >= expected_sent
            if done and "campaigns_last_pass_timestamp_seconds" in found and "campaigns_messages_failed_total" in found:
                break
        service.send_signal(signal.SIGTERM)
        _out, err = service.communicate(timeout=30)
    finally:
        if service.poll() is None:
            service.kill()
    assert service.returncode == 0, err
    return found


def test_the_executor_exports_every_metric_of_the_issue_with_its_labels(scrape: dict[str, set[str]]) -> None:
    assert scrape["campaigns_messages_total"] == {"task", "channel", "status"}
    assert scrape["campaigns_messages_failed_total"] == {"task", "channel", "reason"}
    assert scrape["campaigns_provider_request_seconds_bucket"] == {"channel", "outcome", "le"}
    assert scrape["campaigns_provider_request_seconds_count"] == {"channel", "outcome"}
    assert scrape["campaigns_occurrence_pending"] == {"task", "occurrence"}
    assert scrape["campaigns_executor_behind"] == set()
    assert scrape["campaigns_last_pass_timestamp_seconds"] == set()  # one value over all workers, no pid label


@pytest.mark.parametrize("title,target", dashboard_targets(), ids=[title for title, _ in dashboard_targets()])
def test_each_dashboard_query_names_exported_metrics_and_labels(scrape: dict[str, set[str]], title: str, target: dict) -> None:
    names = metric_names(target["expr"])
    assert names, f"{title}: the query names no campaigns_ metric"
    assert names <= set(scrape), f"{title}: not exported: {sorted(names - set(scrape))}"
    labels = set().union(*(scrape[name] for name in names))
    used = label_names(target["expr"]) | legend_labels(target.get("legendFormat", ""))
    assert used <= labels, f"{title}: labels not on {sorted(names)}: {sorted(used - labels)}"


@pytest.mark.parametrize("rule", alert_rules(), ids=[rule["alert"] for rule in alert_rules()])
def test_each_alert_names_exported_metrics_and_labels(scrape: dict[str, set[str]], rule: dict) -> None:
    names = metric_names(rule["expr"])
    assert names and names <= set(scrape), sorted(names - set(scrape))
    labels = set().union(*(scrape[name] for name in names))
    used = label_names(rule["expr"]) | legend_labels(" ".join(rule.get("annotations", {}).values()))
    assert used <= labels, sorted(used - labels)


def test_the_checks_catch_a_metric_the_executor_does_not_export(scrape: dict[str, set[str]]) -> None:
    expr = "sum by (queue) (rate(campaigns_messages_dropped_total[5m]))"
    assert not metric_names(expr) <= set(scrape)
    assert label_names(expr) == {"queue"}
