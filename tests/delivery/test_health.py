"""``campaigns status`` tells the truth: it exits 1 and says which task and why when a running
task cannot be delivered at all, on SQLite and PostgreSQL -- its audience names an attribute
the directory lost, its provider is misconfigured (a gateway token variable not set, an unknown
provider type) -- not only when an occurrence is behind."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from cli_runner import campaigns
from delivery_state import import_users, platform_body, seed, set_status, task_body, write_users

from engine.delivery.directory import import_users as load_users
from engine.state import StateStore

TOKEN_ENV = "CAMPAIGNS_TEST_HEALTH_TOKEN"


NOW = "2026-12-01T08:00:00+08:00"  # before the window opens: nothing is behind


def status(url: str, folder: Path, *extra: str, env: dict[str, str] | None = None):
    return campaigns("status", "--now", NOW, "--state", url, "--repo", str(folder), *extra, env=env)


def prepared(url: str, folder: Path, platform: dict | None = None) -> None:
    write_users(folder / "users.csv", 30)
    store = StateStore.open(url, folder)
    try:
        import_users(store, folder / "users.csv")
        seed(store, platform=platform or platform_body(outbox=folder / "outbox"), tasks={"t1": task_body(), "t2": task_body()})
    finally:
        store.close()


def healthy(url: str, folder: Path, env: dict[str, str] | None = None) -> None:
    result = status(url, folder, env=env)
    assert result.code == 0, result.err
    data = json.loads(status(url, folder, "--format", "json", env=env).out)
    assert data["undeliverable"] == [] and data["ok"] is True


@pytest.fixture(autouse=True)
def _no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)


def test_an_attribute_the_directory_lost_makes_status_fail(state_url: str, tmp_path: Path) -> None:
    prepared(state_url, tmp_path)
    healthy(state_url, tmp_path)
    with (tmp_path / "without-points.csv").open("w", newline="") as handle:  # a new export lost a column
        writer = csv.writer(handle)
        writer.writerow(["user_id", "first_name"])
        writer.writerows([f"u{i:05d}", f"Name{i}"] for i in range(30))
    store = StateStore.open(state_url, tmp_path)
    try:
        load_users(store, tmp_path / "without-points.csv", replace=True)
        set_status(store, "t2", "paused")  # only running tasks matter
    finally:
        store.close()

    result = status(state_url, tmp_path)
    assert result.code == 1
    assert (
        "undeliverable: task t1 cannot be delivered: its audiences cannot be evaluated: audience 'everyone': "
        "the user directory has no attribute 'points'" in result.err
    )
    assert "1 running task cannot be delivered (t1)" in result.err and "t2" not in result.err
    assert "running (cannot be delivered)" in result.out  # the table is still shown
    data = json.loads(status(state_url, tmp_path, "--format", "json").out)
    assert [item["task"] for item in data["undeliverable"]] == ["t1"] and data["ok"] is False
    assert "no attribute 'points'" in {t["task"]: t for t in data["tasks"]}["t1"]["undeliverable"]
    # the executor agrees: it cannot deliver it either
    run = campaigns("run", "--once", "--now", "2026-12-01T09:30:00+08:00", "--state", state_url, "--repo", str(tmp_path))
    assert run.code == 1 and "no attribute 'points'" in run.err


def test_a_gateway_token_that_is_not_set_makes_status_fail(state_url: str, tmp_path: Path) -> None:
    gateway = {"type": "gateway", "url": "http://127.0.0.1:9/send", "token_env": TOKEN_ENV}
    prepared(state_url, tmp_path, platform_body(outbox=tmp_path / "outbox", providers={"default": {"type": "outbox"}, "push": gateway}))
    result = status(state_url, tmp_path)
    assert result.code == 1
    for task in ("t1", "t2"):
        assert f"undeliverable: task {task} cannot be delivered: its push provider is misconfigured: " in result.err
    assert f"the environment variable {TOKEN_ENV} is not set" in result.err
    assert "2 running tasks cannot be delivered (t1, t2)" in result.err
    healthy(state_url, tmp_path, env={TOKEN_ENV: "a-token"})


def test_an_unknown_provider_type_makes_status_fail(state_url: str, tmp_path: Path) -> None:
    platform = platform_body(outbox=tmp_path / "outbox")
    platform["providers"] = {"default": {"type": "carrier-pigeon"}}  # stored by an apply of another version
    prepared(state_url, tmp_path, platform)
    result = status(state_url, tmp_path)
    assert result.code == 1
    assert "task t1 cannot be delivered: the applied platform is not valid: providers.default" in result.err
    assert "carrier-pigeon" in result.err and "Traceback" not in result.err


def test_an_audience_missing_from_the_state_makes_status_fail(state_url: str, tmp_path: Path) -> None:
    prepared(state_url, tmp_path)
    healthy(state_url, tmp_path)
    store = StateStore.open(state_url, tmp_path)
    try:
        seed(store, platform=platform_body(outbox=tmp_path / "outbox"), tasks={"t1": task_body(audiences=["nobody"])})
    finally:
        store.close()
    result = status(state_url, tmp_path)
    assert result.code == 1
    assert "task t1 cannot be delivered: its audiences cannot be evaluated: audience 'nobody' is not defined" in result.err
