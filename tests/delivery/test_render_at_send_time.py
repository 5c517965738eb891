"""What is checked when a message is rendered for a user, through ``campaigns run --once --now``
(issue 10 items 3-5, issue 11 item 1): length limits, URLs, undeclared attributes, budgets.

Each scenario stores validated-looking content in the state and users whose data is hostile, and
checks that no offending message reaches the outbox, that every such user is ``failed`` with a
reason, and that the pass completes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cli_runner import campaigns
from delivery_state import SERVICE_NOW, creative_body, import_users, outbox_lines, platform_body, seed, service_task, task_body, template_body

from engine.state import StateStore

NOW = "2026-12-01T09:30:00+08:00"


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    import csv

    columns = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def setup(root: Path, url: str, users: list[dict[str, str]], *, creative: dict, template: dict | None = None,
          platform: dict | None = None) -> None:
    write_csv(root / "users.csv", users)
    store = StateStore.open(url, root)
    try:
        import_users(store, root / "users.csv")
        seed(
            store,
            platform=platform or platform_body(outbox=".campaigns/outbox"),
            tasks={"t1": task_body()},
            creatives={"cr-a": creative},
            templates={"tpl-push": template or template_body("push")},
        )
    finally:
        store.close()


def run_once(root: Path, url: str) -> tuple[str, list[dict], dict[str, dict]]:
    result = campaigns("run", "--once", "--now", NOW, "--state", url, "--repo", str(root))
    assert result.code == 0, result.err
    assert "Traceback" not in result.err
    sent = outbox_lines(root / ".campaigns" / "outbox")
    store = StateStore.open(url, root)
    try:
        from sqlalchemy import select

        from engine.state import ledger_tables as lt

        with store.reading() as conn:
            rows = {row.user_id: row._asdict() for row in conn.execute(select(lt.deliveries))}
    finally:
        store.close()
    return result.out, sent, rows


def user(user_id: str, first_name: str, points: str = "10") -> dict[str, str]:
    return {"user_id": user_id, "first_name": first_name, "points": points}


def short_title_template() -> dict:
    template = template_body("push")
    template["fields"]["title"]["max_length"] = 20
    return template


def test_a_rendered_field_over_its_max_length_is_failed_too_long_never_sent(tmp_path, state_url):
    setup(
        tmp_path,
        state_url,
        [user("u-ana", "Ana"), user("u-long", "Bartholomew-Maximilian-Alexander")],
        creative=creative_body(title="Hi {{ user.first_name }}"),
        template=short_title_template(),
    )
    out, sent, rows = run_once(tmp_path, state_url)
    assert [m["user_id"] for m in sent] == ["u-ana"]
    assert rows["u-long"]["status"] == "failed"
    assert "title" in rows["u-long"]["error"] and "the limit is 20" in rows["u-long"]["error"]
    if "reason" in rows["u-long"]:
        assert rows["u-long"]["reason"] == "too-long"
    assert "1 sent, 1 failed" in out


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch):
    from delivery_gateway import TOKEN, TOKEN_ENV, Gateway
    from pytest_httpserver import HTTPServer

    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    try:
        yield Gateway(server)
    finally:
        server.clear()
        server.stop()


def test_a_gateway_message_content_over_4096_characters_is_too_long_never_sent(tmp_path, state_url, gateway):
    from delivery_gateway import gateway_platform

    template = template_body("push")
    template["fields"]["content"]["max_length"] = 4096
    template["variables"]["bio"] = {"example": "Hello"}
    # 4,000 characters fit the field; as JSON (with the title and URL) they pass 4,096
    setup(
        tmp_path,
        state_url,
        [{**user("u-short", "Ana"), "bio": "Hello"}, {**user("u-long", "Bo"), "bio": "x" * 4000 + '"' * 60}],
        creative=creative_body(content="{{ user.bio }}"),
        template=template,
        platform=gateway_platform(gateway),
    )
    _, _, rows = run_once(tmp_path, state_url)
    assert [customer for _, customer in gateway.received] == ["u-short"]
    assert rows["u-long"]["status"] == "failed"
    assert "messageContent" in rows["u-long"]["error"]
    if "reason" in rows["u-long"]:
        assert rows["u-long"]["reason"] == "too-long"


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("@evil.example/login", "userinfo"),
        ("/x\r\nSet-Cookie: a=b", "control"),
        (".evil.example/login", "host"),
        (":8443/login", "port"),
    ],
)
def test_a_rendered_redirection_that_leaves_its_static_host_is_failed_url_invalid(tmp_path, state_url, value, why):
    setup(
        tmp_path,
        state_url,
        [user("u-good", "/promo"), user("u-evil", value)],
        creative=creative_body(redirection="https://shop.example.com{{ user.first_name }}"),
    )
    out, sent, rows = run_once(tmp_path, state_url)
    assert [m["redirection"] for m in sent] == ["https://shop.example.com/promo"]
    assert rows["u-evil"]["status"] == "failed"
    assert "redirection" in rows["u-evil"]["error"]
    if "reason" in rows["u-evil"]:
        assert rows["u-evil"]["reason"] == "url-invalid"
    for message in sent:
        assert "evil" not in message["redirection"] and "\r" not in message["redirection"]


def test_only_declared_attributes_reach_a_message(tmp_path, state_url):
    rows_in = [{**user("u-1", "Ana"), "secret": "s3cr3t-token"}]
    creative = creative_body(title="Hi {{ user.first_name }}", content="{{ user.secret | default('nothing to see') }}")
    setup(tmp_path, state_url, rows_in, creative=creative)  # the template declares first_name and points only
    _, sent, _ = run_once(tmp_path, state_url)
    assert len(sent) == 1
    assert sent[0]["content"] == "nothing to see"
    assert "s3cr3t" not in json.dumps(sent)


FORBIDDEN_IN_STATE = {
    "range-loops": "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
    "string-multiplication": "{{ 'A' * 10**9 }}",
    "lipsum": "{{ lipsum(n=10**7) }}",
    "whole-user": "{{ user }}",
    "3000-parentheses": "{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}",
}


@pytest.mark.parametrize("content", list(FORBIDDEN_IN_STATE.values()), ids=list(FORBIDDEN_IN_STATE))
def test_a_forbidden_text_that_reached_the_state_fails_every_user_quickly(tmp_path, state_url, content):
    """A state written by an older engine (or by hand) may hold what validate now refuses: it is
    never rendered; its users fail and the pass completes."""
    setup(tmp_path, state_url, [user(f"u-{n}", "Ana") for n in range(20)], creative=creative_body(content=content))
    started = time.perf_counter()
    out, sent, rows = run_once(tmp_path, state_url)
    assert time.perf_counter() - started < 20
    assert sent == []
    assert {row["status"] for row in rows.values()} == {"failed"}
    assert "20 failed" in out


def test_renders_over_the_time_budget_fail_and_never_stall_the_pass(tmp_path, state_url, monkeypatch):
    from engine import templating

    monkeypatch.setattr(templating, "RENDER_SECONDS", 0.0)  # every render is over budget
    content = "".join("{{ user.first_name | replace('a', 'b') }}" for _ in range(40))
    template = template_body("push")
    template["fields"]["content"]["max_length"] = 4096
    setup(tmp_path, state_url, [user(f"u-{n:03d}", "a" * 90) for n in range(200)], creative=creative_body(content=content), template=template)
    started = time.perf_counter()
    out, sent, rows = run_once(tmp_path, state_url)
    assert time.perf_counter() - started < 30
    assert sent == []
    assert {row["status"] for row in rows.values()} == {"failed"}
    errors = [row["error"] for row in rows.values()]
    assert all("ms" in error for error in errors)
    assert sum("skipped" in error for error in errors) >= 190  # after a few timeouts the creative is skipped


def test_sigterm_stops_the_service_while_it_renders_a_slow_batch(tmp_path):
    """A batch of users whose (valid, but heavy) creative takes ~20 ms each to render would hold
    the service for most of a minute; SIGTERM stops it within seconds, the unrendered users stay
    pending for a later run, nobody is sent twice and nothing is left claimed."""
    import os
    import signal
    import subprocess
    import sys

    from engine.delivery.ledger import Ledger

    heavy = "".join("{% if user.bio | replace('a', 'b') | upper | lower | title | trim == 'x' %}y{% endif %}" for _ in range(16))
    template = template_body("push")
    template["variables"]["bio"] = {"example": "x"}
    bio = ("ab cd " * 700)[:4000]
    count = 2000
    write_csv(tmp_path / "users.csv", [{**user(f"u{n:05d}", "Ana"), "bio": bio} for n in range(count)])
    store = StateStore.open(f"sqlite:///{tmp_path}/.campaigns/state.db", tmp_path)
    try:
        import_users(store, tmp_path / "users.csv")
        task = service_task()
        seed(store, platform=platform_body(outbox=".campaigns/outbox", batch_size=5000), tasks={"t1": task},
             creatives={"cr-a": creative_body(content=heavy)}, templates={"tpl-push": template})
    finally:
        store.close()
    service = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", "--now", SERVICE_NOW, "--repo", str(tmp_path), "--interval", "0.2", "--log", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ},
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until the batch is claimed: rendering has begun
            store = StateStore.open(f"sqlite:///{tmp_path}/.campaigns/state.db", tmp_path)
            try:
                if Ledger(store).claim_holders("t1", "once") - {None}:
                    break
            except Exception:  # noqa: BLE001 - the ledger tables may not exist yet
                pass
            finally:
                store.close()
            time.sleep(0.1)
        time.sleep(1.0)
        signalled = time.monotonic()
        service.send_signal(signal.SIGTERM)
        _out, err = service.communicate(timeout=60)
        stopped_after = time.monotonic() - signalled
    finally:
        if service.poll() is None:
            service.kill()
    assert service.returncode == 0, err
    assert stopped_after < 8, f"took {stopped_after:.1f} s to stop"
    sent = outbox_lines(tmp_path / ".campaigns" / "outbox")
    assert len(sent) < count
    store = StateStore.open(f"sqlite:///{tmp_path}/.campaigns/state.db", tmp_path)
    try:
        rows = Ledger(store).rows("t1", "once")
        statuses = [row["status"] for row in rows]
        assert statuses.count("sent") == len(sent) and "failed" not in statuses
        assert Ledger(store).claim_holders("t1", "once") <= {None}
    finally:
        store.close()
