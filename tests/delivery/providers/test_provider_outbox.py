"""The outbox provider: JSON lines a person or a tool can read, durable per batch, safe to share."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine.delivery.providers.outbox as outbox_module
from engine.delivery.providers import OUTBOX_KEYS, Message, Outbox
from engine.errors import CampaignsError

SPEC_KEYS = ["message_id", "task", "occurrence", "user_id", "channel", "creative", "title", "content", "redirection", "sent_at"]
FIXED = dt.datetime(2026, 12, 1, 9, 30, 5, 123456, tzinfo=dt.timezone(dt.timedelta(hours=8)))


def message(i: int, channel: str = "push", **changes: object) -> Message:
    fields = {
        "message_id": f"flash-sale:2026-12-01:{i:08d}",
        "task": "flash-sale",
        "occurrence": "2026-12-01",
        "user_id": f"u-{i}",
        "channel": channel,
        "creative": "flash-a",
        "title": "Hello",
        "content": f"You have {i} points",
        "redirection": "https://shop.example/flash",
    }
    fields.update(changes)
    return Message(**fields)


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_lines_have_exactly_the_spec_keys_and_the_message_values(tmp_path: Path) -> None:
    messages = [message(1), message(2, title=None, redirection=["gcash://rewards", "https://r.example"]), message(3, content=None, redirection=None)]
    with Outbox(tmp_path / "outbox", "push", clock=lambda: FIXED) as outbox:
        deliveries = outbox.send(messages)

    assert [(d.message_id, d.status, d.attempts, d.error) for d in deliveries] == [
        (m.message_id, "sent", 1, None) for m in messages
    ]
    rows = read_lines(tmp_path / "outbox" / "push.jsonl")
    assert list(OUTBOX_KEYS) == SPEC_KEYS
    assert [list(row) for row in rows] == [SPEC_KEYS] * 3
    for row, m in zip(rows, messages):
        assert {k: row[k] for k in SPEC_KEYS[:-1]} == {k: getattr(m, k) for k in SPEC_KEYS[:-1]}
        assert row["sent_at"] == "2026-12-01T01:30:05.123456Z"  # ISO 8601, in UTC


def test_sent_at_is_the_real_utc_time_by_default(tmp_path: Path) -> None:
    before = dt.datetime.now(dt.timezone.utc)
    with Outbox(tmp_path, "sms") as outbox:
        outbox.send([message(1, channel="sms")])
    after = dt.datetime.now(dt.timezone.utc)
    [row] = read_lines(tmp_path / "sms.jsonl")
    sent_at = dt.datetime.fromisoformat(row["sent_at"])
    assert sent_at.utcoffset() == dt.timedelta(0)
    assert before <= sent_at <= after


text = st.text(st.characters(codec=None), max_size=30)  # every code point, lone surrogates too


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fields=st.fixed_dictionaries(
        {
            "message_id": text,
            "task": text,
            "user_id": text,
            "creative": text,
            "title": st.none() | text,
            "content": st.none() | text,
            "redirection": st.none() | text | st.lists(text, max_size=3),
        }
    )
)
def test_any_text_gives_one_line_equal_to_json_dumps(tmp_path_factory: pytest.TempPathFactory, fields: dict) -> None:
    folder = tmp_path_factory.mktemp("outbox")
    m = Message(occurrence="test", channel="push", **fields)
    with Outbox(folder, "push", clock=lambda: FIXED) as outbox:
        outbox.send([m])
    data = (folder / "push.jsonl").read_bytes()
    assert data.count(b"\n") == 1 and data.endswith(b"\n")
    expected = {k: getattr(m, k) for k in SPEC_KEYS[:-1]} | {"sent_at": "2026-12-01T01:30:05.123456Z"}
    assert data.decode("ascii") == json.dumps(expected) + "\n"


def test_appends_across_batches_and_reopenings_and_creates_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "deep" / "outbox"
    with Outbox(folder, "inbox-ewallet") as outbox:
        outbox.send([message(1, channel="inbox-ewallet")])
        outbox.send([message(2, channel="inbox-ewallet"), message(3, channel="inbox-ewallet")])
        assert outbox.send([]) == []
    with Outbox(folder, "inbox-ewallet") as outbox:
        outbox.send([message(4, channel="inbox-ewallet")])
    assert [row["user_id"] for row in read_lines(folder / "inbox-ewallet.jsonl")] == ["u-1", "u-2", "u-3", "u-4"]


def test_one_fsync_per_batch_not_per_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = outbox_module._sync
    monkeypatch.setattr(outbox_module, "_sync", lambda fd: (synced.append(fd), real(fd)))
    with Outbox(tmp_path, "push") as outbox:
        outbox.send([message(i) for i in range(500)])
        outbox.send([message(i) for i in range(500, 700)])
    assert len(synced) == 2
    assert len(read_lines(tmp_path / "push.jsonl")) == 700


def test_message_for_another_channel_is_failed_and_not_written(tmp_path: Path) -> None:
    with Outbox(tmp_path, "push") as outbox:
        deliveries = outbox.send([message(1), message(2, channel="sms"), message(3)])
    assert [d.status for d in deliveries] == ["sent", "failed", "sent"]
    assert "sms" in deliveries[1].error
    assert [row["user_id"] for row in read_lines(tmp_path / "push.jsonl")] == ["u-1", "u-3"]
    assert not (tmp_path / "sms.jsonl").exists()


def test_unwritable_folder_is_a_clear_error_when_opened(tmp_path: Path) -> None:
    blocker = tmp_path / "outbox"
    blocker.write_text("a file, not a folder")
    with pytest.raises(CampaignsError, match="cannot open the outbox"):
        Outbox(blocker, "push")


def test_sending_on_a_closed_outbox_is_an_error(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, "push")
    outbox.close()
    outbox.close()  # closing twice is harmless
    with pytest.raises(CampaignsError, match="closed"):
        outbox.send([message(1)])


WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from engine.delivery.providers import Message, Outbox

    folder, name, batches, size = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    filler = name * (3000 // len(name))  # a batch is far longer than PIPE_BUF or a stdio buffer
    while not (folder / "go").exists():  # start together, so the appends really overlap
        time.sleep(0.001)
    with Outbox(folder, "push") as outbox:
        for b in range(batches):
            outbox.send([
                Message(f"{name}:{b}:{i}", "t", "once", f"{name}-{b}-{i}", "push", "c", name, filler, None)
                for i in range(size)
            ])
    """
)


def test_two_processes_appending_at_once_never_tear_a_line(tmp_path: Path) -> None:
    batches, size = 100, 25
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), name, str(batches), str(size)])
        for name in ("alpha", "omega")
    ]
    time.sleep(0.3)
    (tmp_path / "go").touch()
    assert [w.wait(timeout=120) for w in writers] == [0, 0]

    raw = (tmp_path / "push.jsonl").read_bytes().split(b"\n")
    assert raw[-1] == b""
    rows = [json.loads(line) for line in raw[:-1]]  # a torn line would not parse
    assert len(rows) == 2 * batches * size
    assert len({row["message_id"] for row in rows}) == len(rows)
    assert all(row["content"] == row["title"] * (3000 // len(row["title"])) for row in rows)
    for name in ("alpha", "omega"):  # each writer's lines stay in its own order
        ids = [row["message_id"] for row in rows if row["title"] == name]
        assert ids == [f"{name}:{b}:{i}" for b in range(batches) for i in range(size)]
    # One write() per batch: a batch is one contiguous block, never interleaved with the other's.
    batch_of_each_row = [row["message_id"].rsplit(":", 1)[0] for row in rows]
    blocks = [batch for batch, _ in itertools.groupby(batch_of_each_row)]
    assert len(blocks) == 2 * batches


def test_a_torn_last_line_is_cut_off_before_the_next_append(tmp_path: Path) -> None:
    with Outbox(tmp_path, "push") as outbox:
        outbox.send([message(1), message(2)])
    whole = (tmp_path / "push.jsonl").read_bytes()
    torn = b'{"message_id": "flash-sale:2026-12-01:00000003", "task": "flash-sa'
    (tmp_path / "push.jsonl").write_bytes(whole + torn)  # a writer killed in the middle of its write()

    with Outbox(tmp_path, "push") as outbox:
        assert len(outbox.notices) == 1 and "torn line" in outbox.notices[0] and "push.jsonl.torn" in outbox.notices[0]
        outbox.send([message(3)])
    assert [row["user_id"] for row in read_lines(tmp_path / "push.jsonl")] == ["u-1", "u-2", "u-3"]
    assert (tmp_path / "push.jsonl.torn").read_bytes() == torn + b"\n"  # kept, not silently destroyed


def test_a_line_torn_by_another_process_after_opening_is_repaired_too(tmp_path: Path) -> None:
    with Outbox(tmp_path, "push") as outbox:
        outbox.send([message(1)])
        with (tmp_path / "push.jsonl").open("ab") as other:  # another worker, killed mid-write
            other.write(b'{"message_id": "x", "ta')
        outbox.send([message(2)])
        assert len(outbox.notices) == 1
    assert [row["user_id"] for row in read_lines(tmp_path / "push.jsonl")] == ["u-1", "u-2"]


def test_a_file_that_is_one_torn_line_is_emptied(tmp_path: Path) -> None:
    (tmp_path / "push.jsonl").write_bytes(b'{"message_id": "half' * 10_000)  # longer than one read-back block
    with Outbox(tmp_path, "push") as outbox:
        outbox.send([message(1)])
    assert [row["user_id"] for row in read_lines(tmp_path / "push.jsonl")] == ["u-1"]


KILLED_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from engine.delivery.providers import Message, Outbox

    folder, run = Path(sys.argv[1]), sys.argv[2]
    filler = "x" * 2000
    with Outbox(folder, "push") as outbox:
        print("open", flush=True)
        for b in range(10_000):  # big batches: most of the time is spent inside write()
            outbox.send([Message(f"{run}:{b}:{i}", "t", "once", f"u{i}", "push", "c", run, filler, None) for i in range(8000)])
    """
)


def test_kill_9_at_random_moments_never_leaves_a_line_glued_to_the_next(tmp_path: Path) -> None:
    import os
    import random
    import signal

    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    path = tmp_path / "push.jsonl"
    for run in range(8):
        writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path), f"r{run}"], stdout=subprocess.PIPE, text=True)
        try:
            assert writer.stdout is not None and writer.stdout.readline() == "open\n"
            if run % 2:  # at a random moment
                time.sleep(rng.uniform(0.05, 0.8))
            else:  # the moment the file is seen growing: in the middle of a write()
                start = path.stat().st_size
                deadline = time.monotonic() + 30
                while path.stat().st_size == start and time.monotonic() < deadline:
                    time.sleep(0.0005)
                time.sleep(rng.uniform(0, 0.004))
            os.kill(writer.pid, signal.SIGKILL)
        finally:
            writer.wait(timeout=30)
    with Outbox(tmp_path, "push") as outbox:
        outbox.send([message(1)])
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    rows = [json.loads(line) for line in raw.split(b"\n")[:-1]]  # every line parses: nothing glued
    assert rows[-1]["user_id"] == "u-1"
    torn = tmp_path / "push.jsonl.torn"
    assert torn.exists(), f"seed {seed}: no kill landed inside a write(); the repair was not exercised"
    fragments = torn.read_bytes().split(b"\n")[:-1]
    assert fragments and all(fragments) and len(fragments) <= 8  # at most one torn line per kill
