"""Every failure keeps its reason, through ``campaigns run --once --now`` and ``campaigns report``
on SQLite and PostgreSQL: failed by reason per occurrence, and ``--failed [--occurrence KEY]``
listing the failed users with reason and detail, streamed."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tracemalloc
from pathlib import Path

import pytest
from cli_runner import campaigns
from delivery_gateway import TOKEN, TOKEN_ENV, Gateway
from delivery_state import import_users, platform_body, seed, task_body
from pytest_httpserver import HTTPServer

from engine.delivery.ids import message_id
from engine.delivery.ledger import Ledger, NewRow, Outcome
from engine.state import StateStore

DAYS = ("2026-12-01", "2026-12-02")


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch):
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    try:
        yield Gateway(server)
    finally:
        server.clear()
        server.stop()


def write_users(path: Path, count: int) -> list[str]:
    """u000..: u003 has no first_name (missing variable), u005 a name too long for the gateway."""
    ids = []
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "first_name", "points"])
        for number in range(count):
            user_id = f"u{number:03d}"
            ids.append(user_id)
            name = "" if number == 3 else ("N" * 5000 if number == 5 else f"Name{number}")
            writer.writerow([user_id, name, number])
    return ids


@pytest.fixture
def delivered(state_url: str, tmp_path: Path, gateway: Gateway) -> tuple[str, Path]:
    """Two daily occurrences of ``t1`` delivered through the gateway, which refuses u007 (with a
    code) and u008 (without)."""
    write_users(tmp_path / "users.csv", 40)
    store = StateStore.open(state_url, tmp_path)
    try:
        import_users(store, tmp_path / "users.csv")
        platform = platform_body(providers={"push": {"type": "gateway", "url": gateway.url, "token_env": TOKEN_ENV, "max_attempts": 2}})
        task = task_body(start=DAYS[0], finish=DAYS[1], recurrence={"type": "daily", "every": 1})
        seed(store, platform=platform, tasks={"t1": task})
    finally:
        store.close()

    def reply(messages, number):
        rows = []
        for m in messages:
            if m["customerId"] == "u007":
                rows.append({"messageId": m["messageId"], "success": False, "retry": False, "resultCode": "USER_BLOCKED"})
            elif m["customerId"] == "u008":
                rows.append({"messageId": m["messageId"], "success": False, "retry": False})
            else:
                rows.append({"messageId": m["messageId"], "success": True, "retry": False})
        return gateway.results(rows)

    gateway.reply = reply
    for day in DAYS:
        result = campaigns("run", "--once", "--now", f"{day}T09:30:00+08:00", "--state", state_url, "--repo", str(tmp_path), "--log", "json")
        assert result.code == 0, result.err
        assert f"task t1 occurrence {day}: 36 sent, 4 failed (1 missing-variable, 2 provider-rejected, 1 too-long)." in result.out
    return state_url, tmp_path


def report(url: str, folder: Path, *extra: str):
    return campaigns("report", "t1", "--state", url, "--repo", str(folder), *extra)


def test_report_shows_failed_by_reason_per_occurrence(delivered) -> None:
    url, folder = delivered
    data = json.loads(report(url, folder, "--format", "json").out)
    expected = {"missing-variable": 1, "provider-rejected": 2, "too-long": 1}
    assert [(o["occurrence"], o["failed"], o["failed_by_reason"]) for o in data["occurrences"]] == [
        (day, 4, expected) for day in DAYS
    ]
    assert data["totals"]["failed_by_reason"] == {reason: 2 * count for reason, count in expected.items()}
    table = report(url, folder).out.splitlines()
    assert table[2].split()[-6:] == ["1", "missing-variable,", "2", "provider-rejected,", "1", "too-long"]
    assert "failures" not in data  # only with --failed


def test_report_failed_lists_every_failed_user_with_reason_and_detail(delivered) -> None:
    url, folder = delivered
    result = report(url, folder, "--failed", "--format", "json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    failures = data["failures"]
    assert [(f["occurrence"], f["user_id"], f["reason"]) for f in failures] == [
        (day, user, reason)
        for day in DAYS
        for user, reason in (("u003", "missing-variable"), ("u005", "too-long"), ("u007", "provider-rejected"), ("u008", "provider-rejected"))
    ]
    by_user = {f["user_id"]: f["detail"] for f in failures}
    assert "first_name" in by_user["u003"]  # which variable
    assert "4,096" in by_user["u005"] or "4096" in by_user["u005"]  # which limit
    assert by_user["u007"].startswith("USER_BLOCKED: ") and by_user["u008"].startswith("retry=false: ")  # the provider's code
    assert data["occurrences"][0]["failed_by_reason"]  # the report itself is still there

    one = json.loads(report(url, folder, "--failed", "--occurrence", DAYS[1], "--format", "json").out)
    assert {f["occurrence"] for f in one["failures"]} == {DAYS[1]} and len(one["failures"]) == 4

    table = report(url, folder, "--failed", "--occurrence", DAYS[0])
    assert table.code == 0, table.err
    lines = table.out.splitlines()
    start = lines.index(f"Failed users of occurrence {DAYS[0]}:")
    assert lines[start + 1].split() == ["OCCURRENCE", "USER", "REASON", "DETAIL"]
    assert [line.split()[:3] for line in lines[start + 2 : start + 6]] == [
        [DAYS[0], "u003", "missing-variable"], [DAYS[0], "u005", "too-long"],
        [DAYS[0], "u007", "provider-rejected"], [DAYS[0], "u008", "provider-rejected"],
    ]
    assert lines[-1] == "4 failed users."


def test_report_failed_errors_and_an_occurrence_without_failures(delivered) -> None:
    url, folder = delivered
    wrong = report(url, folder, "--failed", "--occurrence", "2026-12-03")
    assert wrong.code == 1 and "task t1 has no occurrence '2026-12-03' (did you mean" in wrong.err
    alone = report(url, folder, "--occurrence", DAYS[0])
    assert alone.code != 0 and "--occurrence only works with --failed" in alone.err
    assert "Traceback" not in wrong.err + alone.err


def test_report_failed_on_a_task_without_failures(state_url: str, tmp_path: Path) -> None:
    write_users(tmp_path / "users.csv", 3)
    store = StateStore.open(state_url, tmp_path)
    try:
        import_users(store, tmp_path / "users.csv")
        seed(store, platform=platform_body(outbox=tmp_path / "outbox"), tasks={"t1": task_body()},
             creatives={"cr-a": {"name": "C", "template": "tpl-push", "title": "Hi", "content": "Hello", "redirection": "https://x.example"}})
    finally:
        store.close()
    assert campaigns("run", "--once", "--now", "2026-12-01T09:30:00+08:00", "--state", state_url, "--repo", str(tmp_path)).code == 0
    data = json.loads(report(state_url, tmp_path, "--failed", "--format", "json").out)
    assert data["failures"] == [] and data["occurrences"][0]["sent"] == 3
    assert report(state_url, tmp_path, "--failed").out.splitlines()[-1] == "No failed users."


# -- streaming ----------------------------------------------------------------------------------


def failed_rows(store: StateStore, count: int) -> None:
    """``count`` failed ledger rows for ``t1``/``once``, written as the executor writes them."""
    ledger = Ledger(store, executor="e" * 32)
    ledger.open_occurrence("t1", "once", site="ph", channel="push", finish_at=2e9, now=0)
    users = [f"u{i:07d}" for i in range(count)]

    def take(after, limit):
        rest = users if after is None else users[users.index(after) + 1 :]
        return [type("M", (), {"user_id": u})() for u in rest[:limit]], len(rest) <= limit

    def build(members, _sent):
        return [NewRow(m.user_id, message_id("t1", "once", m.user_id), "pending", "cr-a", "ph/2026-12-01") for m in members]

    result = ledger.claim("t1", "once", limit=count, take=take, build=build, now=1.0)
    outcomes = [Outcome(u, "failed", 0, f"creative cr-a: the user has no 'first_name' attribute ({u})", "missing-variable") for u in users]
    ledger.finish(result.claim, count, outcomes, 2.0)


def test_the_failed_list_is_read_in_chunks_as_it_is_consumed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite reads by keyset, one short read per chunk (PostgreSQL streams one server-side
    cursor: its memory is measured below)."""
    store = StateStore.open(f"sqlite:///{tmp_path}/state.db", tmp_path)
    try:
        seed(store, platform=platform_body(), tasks={"t1": task_body()})
        failed_rows(store, 50)
        reads = []
        real = store.reading

        def counted():
            reads.append(1)
            return real()

        monkeypatch.setattr(store, "reading", counted)
        listed = Ledger(store).failures("t1", chunk=7)
        first = next(listed)
        assert first.user_id == "u0000000" and len(reads) == 1  # one chunk read, not everything
        rest = list(listed)
        assert len(rest) == 49 and len(reads) == 8  # ceil(50 / 7) chunks, each its own short read
        assert [f.user_id for f in [first, *rest]] == [f"u{i:07d}" for i in range(50)]
    finally:
        store.close()


def _peak_of_report(url: str, folder: Path) -> tuple[int, int]:
    """Peak traced memory of ``report t1 --failed --format json`` in this process, its output
    counted and dropped (not kept: the output of a million failures is not the report's memory)."""

    class Sink(io.TextIOBase):
        def __init__(self) -> None:
            self.lines = 0

        def write(self, text: str) -> int:
            self.lines += text.count("\n")
            return len(text)

    sink = Sink()
    from engine.cli import main

    previous = os.getcwd()
    tracemalloc.start()
    try:
        with contextlib.redirect_stdout(sink):
            try:
                main(["report", "t1", "--failed", "--format", "json", "--no-estimate", "--state", url, "--repo", str(folder)])
            except SystemExit as done:
                assert not done.code
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        os.chdir(previous)
    return peak, sink.lines


@pytest.mark.slow
def test_listing_ten_times_more_failures_needs_no_more_memory(make_state_url, tmp_path: Path) -> None:
    peaks = {}
    for count in (6_000, 60_000):
        url = make_state_url()
        store = StateStore.open(url, tmp_path)
        try:
            seed(store, platform=platform_body(), tasks={"t1": task_body()})
            failed_rows(store, count)
        finally:
            store.close()
        peak, lines = _peak_of_report(url, tmp_path)
        assert lines > count  # every failure was written
        peaks[count] = peak
    assert peaks[60_000] < 1.5 * peaks[6_000], peaks  # a list held in memory would take ten times as much
