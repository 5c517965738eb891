"""The gateway provider against the sandbox of the wallet's message API (a real local HTTP
server, tests/helpers/sandbox_gateway.py) and pytest-httpserver: the request shape, the retry
matrix of S/F/U replies and transport failures, signatures both ways, concurrency, pacing and
the total deadline per request."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import unquote

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from pytest_httpserver import HTTPServer
from sandbox_gateway import PATH, SandboxGateway
from werkzeug import Request, Response

from engine.delivery.pacing import Pace
from engine.delivery.providers import Message
from engine.delivery.providers.gateway import Gateway, ReplyError, SendReply, parse_send_reply
from engine.delivery.providers.signing import Signer, Verifier

TOKEN = "sandbox-token"
FAST = {"backoff_base": 0.001, "backoff_cap": 0.01, "timeout": 2.0}


def new_key() -> tuple[str, str]:
    """A fresh RSA key pair as PEM text (private, public)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


PARTNER = new_key()
WALLET = new_key()


def messages(count: int, channel: str = "push", start: int = 0) -> list[Message]:
    return [
        Message(f"t1:once:{i:06d}", "t1", "once", f"u{i:05d}", channel, "c1", f"Hi {i}", f"Body {i}", f"https://shop.example/p/{i}")
        for i in range(start, start + count)
    ]


@pytest.fixture
def sandbox() -> Iterator[SandboxGateway]:
    with SandboxGateway(token=TOKEN) as server:
        yield server


def gateway(url: str, **options) -> Gateway:
    return Gateway(url, options.pop("token", TOKEN), options.pop("channel", "push"), **{**FAST, **options})


# --- the request -------------------------------------------------------------------------------


def test_each_channel_is_sent_as_the_api_wants_it_and_the_sandbox_accepts_it(sandbox: SandboxGateway) -> None:
    sent = messages(3) + messages(2, "sms", 10) + messages(2, "inbox-ewallet", 20)
    for channel in ("push", "sms", "inbox-ewallet"):
        with gateway(sandbox.url, channel=channel) as provider:
            deliveries = provider.send([m for m in sent if m.channel == channel])
        assert all(d.status == "sent" and d.attempts == 1 for d in deliveries), deliveries
    assert sandbox.stats.results == {"S": 3}  # no PARAM_ILLEGAL: every request had the API's shape
    customer, channel, url, content = sandbox.delivered["t1:once:000020"]
    assert (customer, channel, url) == ("u00020", "INBOX", "https://shop.example/p/20")
    assert json.loads(content) == {"title": "Hi 20", "content": "Body 20", "inbox": "ewallet"}
    assert sandbox.delivered["t1:once:000010"][1] == "SMS"


def test_a_redirect_url_over_1024_or_missing_for_push_is_failed_and_never_posted(sandbox: SandboxGateway) -> None:
    long_url, no_url, fine = messages(3)
    long_url.redirection = "https://shop.example/" + "x" * 1004
    no_url.redirection = None
    with gateway(sandbox.url) as provider:
        first, second, third = provider.send([long_url, no_url, fine])
    assert (first.status, first.reason, first.attempts) == ("failed", "too-long", 0)
    assert "redirectUrl is 1025 characters" in first.error
    assert (second.status, second.reason, second.code) == ("failed", "provider-rejected", "redirectUrl-missing")
    assert third.status == "sent"
    assert set(sandbox.delivered) == {fine.message_id}


def test_sms_needs_no_redirect_url(sandbox: SandboxGateway) -> None:
    (message,) = messages(1, "sms")
    message.redirection = None
    with gateway(sandbox.url, channel="sms") as provider:
        assert provider.send([message])[0].status == "sent"
    assert sandbox.delivered[message.message_id][2] is None


# --- the retry matrix ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "action",
    ["U", "U-after", "http:500", "http:503", "http:429", "close", "slow:3", "F:REQUEST_TRAFFIC_EXCEED_LIMIT"],
)
def test_an_unknown_or_throttled_result_is_sent_again_with_the_same_ids(sandbox: SandboxGateway, action: str) -> None:
    sandbox.script = [action]
    batch = messages(20)
    with gateway(sandbox.url, timeout=1.0) as provider:
        deliveries = provider.send(batch)
    assert [d.status for d in deliveries] == ["sent"] * 20
    assert [d.attempts for d in deliveries] == [2] * 20
    first, second = sandbox.received[:20], sandbox.received[20:40]
    assert [m for m, _ in first] == [m for m, _ in second] == [m.message_id for m in batch]  # the same ids again
    assert len(sandbox.delivered) == 20 and not sandbox.conflicts  # a delivered id is not delivered twice


def test_traffic_limit_slows_the_channel_and_says_so(sandbox: SandboxGateway) -> None:
    sandbox.script = ["F:REQUEST_TRAFFIC_EXCEED_LIMIT"]
    pace = Pace(10_000)
    with gateway(sandbox.url, concurrency=1) as provider:
        deliveries = provider.send(messages(20), pace=pace)
        assert all(d.status == "sent" for d in deliveries)
        assert provider.pace_factor < 1.0
        assert pace.rate == 5_000  # this call's pace halved
        assert any("REQUEST_TRAFFIC_EXCEED_LIMIT" in notice for notice in provider.notices)


@pytest.mark.parametrize("code", ["PARAM_ILLEGAL", "ACCESS_DENIED", "INVALID_CLIENT"])
def test_f_fails_the_whole_request_as_provider_rejected_with_the_result_code(sandbox: SandboxGateway, code: str) -> None:
    sandbox.script = [f"F:{code}"]
    with gateway(sandbox.url, concurrency=1) as provider:
        deliveries = provider.send(messages(25))
    rejected, sent = deliveries[:20], deliveries[20:]
    assert all(d.status == "failed" and d.reason == "provider-rejected" and d.code == code and d.attempts == 1 for d in rejected)
    assert all(d.status == "sent" for d in sent)


def test_with_s_each_message_counts_and_a_left_out_one_is_retried(sandbox: SandboxGateway) -> None:
    batch = messages(20)
    sandbox.fail = {"u00003": "reject", "u00007": "retry:1"}
    sandbox.script = ["drop"]  # the first message is left out of the first reply
    with gateway(sandbox.url) as provider:
        deliveries = provider.send(batch)
    by_user = {m.user_id: d for m, d in zip(batch, deliveries)}
    assert by_user["u00003"].status == "failed" and by_user["u00003"].code == "USER_NOT_EXIST"
    assert by_user["u00007"].status == "sent" and by_user["u00007"].attempts == 2
    assert by_user["u00000"].status == "sent" and by_user["u00000"].attempts == 2
    assert sum(d.attempts == 1 and d.status == "sent" for d in deliveries) == 17
    # only the ones to retry went again
    assert sorted(c for _, c in sandbox.received[20:]) == ["u00000", "u00007"]


def test_a_gateway_that_stays_unknown_is_provider_unavailable_after_max_attempts(sandbox: SandboxGateway) -> None:
    sandbox.script = ["U"] * 3
    with gateway(sandbox.url, max_attempts=3) as provider:
        deliveries = provider.send(messages(5))
    assert all(d.status == "failed" and d.reason == "provider-unavailable" and d.attempts == 3 for d in deliveries)
    assert all("answered U" in d.error and "UNKNOWN_EXCEPTION" in d.error for d in deliveries)
    assert not sandbox.delivered


# --- signatures ----------------------------------------------------------------------------------


@pytest.fixture
def signed_sandbox() -> Iterator[SandboxGateway]:
    with SandboxGateway(client_id="partner-1", client_public_key=PARTNER[1], wallet_private_key=WALLET[0]) as server:
        yield server


def signed(url: str, **options) -> Gateway:
    return gateway(url, token=None, signer=Signer(PARTNER[0], "partner-1", 3), verifier=Verifier(WALLET[1]), **options)


def test_signed_requests_are_accepted_and_signed_replies_verified(signed_sandbox: SandboxGateway) -> None:
    with signed(signed_sandbox.url) as provider:
        deliveries = provider.send(messages(45))
    assert all(d.status == "sent" and d.attempts == 1 for d in deliveries)
    assert signed_sandbox.stats.signatures_checked == 3


def test_the_signature_is_rsa_sha256_over_method_path_client_id_time_and_body(httpserver: HTTPServer) -> None:
    """Checked here by hand with cryptography, not with the engine's own verifier."""
    seen: list[Request] = []

    def handler(request: Request) -> Response:
        seen.append(request)
        rows = [{"messageId": m["messageId"], "success": True, "retry": False} for m in json.loads(request.get_data())["messages"]]
        return Response(json.dumps({"result": {"resultStatus": "S", "resultCode": "SUCCESS"}, "messageSendResults": rows}))

    httpserver.expect_request(PATH, method="POST").respond_with_handler(handler)
    with gateway(httpserver.url_for(PATH), token=None, signer=Signer(PARTNER[0], "partner-1", 3)) as provider:
        assert provider.send(messages(2))[0].status == "sent"
    (request,) = seen
    header = request.headers["Signature"]
    fields = dict(part.strip().split("=", 1) for part in header.split(","))
    assert fields["algorithm"] == "RSA256" and fields["keyVersion"] == "3"
    assert "Authorization" not in request.headers
    signature = base64.b64decode(unquote(fields["signature"]))
    content = f"POST {PATH}\npartner-1.{request.headers['Request-Time']}.".encode() + request.get_data()
    public = serialization.load_pem_public_key(PARTNER[1].encode())
    public.verify(signature, content, padding.PKCS1v15(), hashes.SHA256())  # raises if wrong
    assert request.headers["Client-Id"] == "partner-1"
    assert "T" in request.headers["Request-Time"] and request.headers["Request-Time"].endswith("+00:00")


def test_a_request_signed_with_another_key_is_refused_by_the_wallet(signed_sandbox: SandboxGateway) -> None:
    stranger = new_key()
    with gateway(signed_sandbox.url, token=None, signer=Signer(stranger[0], "partner-1")) as provider:
        deliveries = provider.send(messages(3))
    assert all(d.status == "failed" and d.reason == "provider-rejected" and d.code == "INVALID_SIGNATURE" for d in deliveries)
    assert not signed_sandbox.delivered


def test_a_reply_that_does_not_verify_is_unknown_and_resent_never_sent(signed_sandbox: SandboxGateway) -> None:
    signed_sandbox.script = ["bad-signature"]
    batch = messages(20)
    with signed(signed_sandbox.url) as provider:
        deliveries = provider.send(batch)
    assert all(d.status == "sent" and d.attempts == 2 for d in deliveries)
    assert [m for m, _ in signed_sandbox.received[:20]] == [m for m, _ in signed_sandbox.received[20:]]
    assert not signed_sandbox.conflicts


def test_replies_signed_by_someone_else_are_never_counted_as_sent(signed_sandbox: SandboxGateway) -> None:
    with gateway(signed_sandbox.url, token=None, signer=Signer(PARTNER[0], "partner-1"), verifier=Verifier(new_key()[1]), max_attempts=2) as provider:
        deliveries = provider.send(messages(4))
    assert all(d.status == "failed" and d.reason == "provider-unavailable" for d in deliveries)
    assert all("not the wallet's (the signature does not verify)" in d.error for d in deliveries)


def test_an_unsigned_reply_is_unknown_when_a_wallet_key_is_configured(sandbox: SandboxGateway) -> None:
    with gateway(sandbox.url, verifier=Verifier(WALLET[1]), max_attempts=1) as provider:
        (delivery,) = provider.send(messages(1))
    assert delivery.reason == "provider-unavailable" and "no Signature header" in delivery.error


# --- concurrency, pacing, deadlines ----------------------------------------------------------------


def test_requests_are_in_flight_together_up_to_concurrency() -> None:
    with SandboxGateway(token=TOKEN, latency=0.1) as server:
        with gateway(server.url, concurrency=8) as provider:
            started = time.monotonic()
            deliveries = provider.send(messages(320))  # 16 requests: two rounds of 8
            elapsed = time.monotonic() - started
        assert all(d.status == "sent" for d in deliveries)
        assert server.stats.max_in_flight >= 4  # one probe, then the other seven together
        assert elapsed < 0.8, elapsed  # one at a time would take 1.6 s


def test_a_retry_does_not_hold_up_the_other_requests() -> None:
    with SandboxGateway(token=TOKEN, latency=0.05) as server:
        server.script = ["U"]
        with gateway(server.url, concurrency=1, backoff_base=1.0, backoff_cap=1.0) as provider:
            deliveries = provider.send(messages(80))  # four requests, one connection slot
        first, *others, again = server.arrivals
    assert all(d.status == "sent" for d in deliveries)
    assert len(others) == 3
    # while the unknown request waited out its one-second backoff, the other three went and were answered
    assert all(at - first < 0.6 for at in others), [at - first for at in others]
    assert again - first >= 0.5
    assert sorted(d.attempts for d in deliveries) == [1] * 60 + [2] * 20


def test_a_gateway_that_does_not_answer_gets_one_request_at_a_time_then_none() -> None:
    with SandboxGateway(token=TOKEN, latency=0.02) as server:
        server.script = ["http:503"] * 10
        with gateway(server.url, concurrency=8, max_attempts=3) as provider:
            deliveries = provider.send(messages(160))
            assert server.stats.requests == 3 and server.stats.max_in_flight == 1  # the probe alone
            assert sum(d.attempts == 0 and "never posted" in d.error for d in deliveries) == 140
            server.script = []
            again = provider.send(messages(160))  # it answers again: a probe, then the rest at once
    assert all(d.status == "sent" for d in again)
    assert server.stats.max_in_flight >= 4  # one probe, then the other seven together


def test_pace_holds_the_rate_across_concurrent_requests() -> None:
    with SandboxGateway(token=TOKEN) as server:
        with gateway(server.url, concurrency=8) as provider:
            started = time.monotonic()
            provider.send(messages(400), pace=Pace(400, burst=20))
            elapsed = time.monotonic() - started
    assert 0.85 <= elapsed <= 2.0, elapsed  # 400 messages at 400/s, less the first burst


def test_a_stop_leaves_the_unposted_messages_pending_with_no_attempt() -> None:
    with SandboxGateway(token=TOKEN, latency=0.05) as server:
        with gateway(server.url, concurrency=1) as provider:
            calls = {"n": 0}

            def stop() -> bool:
                calls["n"] += 1
                return calls["n"] > 2

            deliveries = provider.send(messages(100), stop=stop)
    assert sum(d.status == "sent" for d in deliveries) == 40
    unposted = [d for d in deliveries if d.status != "sent"]
    assert all(d.reason == "provider-unavailable" and d.attempts == 0 and "not posted" in d.error for d in unposted)


def test_timeout_is_a_total_deadline_even_for_a_reply_trickled_byte_by_byte() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    def trickle(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            while not stop.is_set():
                try:
                    conn.sendall(b" ")
                except OSError:
                    return
                time.sleep(0.05)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=trickle, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}{PATH}"
        with gateway(url, timeout=0.5, max_attempts=2) as provider:
            started = time.monotonic()
            deliveries = provider.send(messages(3))
            elapsed = time.monotonic() - started
    finally:
        stop.set()
        listener.close()
    assert elapsed < 2.0, elapsed  # two tries of 0.5 s, though every read got a byte in time
    assert all(d.reason == "provider-unavailable" and "within 0.5 s" in d.error for d in deliveries)


# --- the reply parser ------------------------------------------------------------------------------


def test_parse_send_reply_reads_each_status() -> None:
    reply = parse_send_reply(
        b'{"result":{"resultStatus":"S","resultCode":"SUCCESS"},"messageSendResults":['
        b'{"messageId":"a","success":true,"retry":false},{"messageId":"b","success":false,"retry":true},'
        b'{"messageId":"a","success":false},{"nope":1},7]}'
    )
    assert reply.status == "S" and reply.code == "SUCCESS"
    assert set(reply.results) == {"a", "b"} and reply.results["a"].success and reply.results["b"].retry
    assert parse_send_reply(b'{"result":{"resultStatus":"F","resultCode":"ACCESS_DENIED"}}').code == "ACCESS_DENIED"
    assert parse_send_reply(b'{"result":{"resultStatus":"U"}}').results == {}


@pytest.mark.parametrize(
    "body",
    [b"", b"[]", b'{"messageSendResults": []}', b'{"result": {"resultStatus": "X"}}', b'{"result": {"resultStatus": "S"}, "messageSendResults": {}}', b"[" * 200 + b"]" * 200, b"\xff"],
)
def test_parse_send_reply_refuses_what_is_no_reply(body: bytes) -> None:
    with pytest.raises(ReplyError):
        parse_send_reply(body)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.recursive(st.none() | st.booleans() | st.text(max_size=5) | st.integers(), lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(["result", "resultStatus", "messageSendResults", "messageId", "success", "x"]), c, max_size=4), max_leaves=20).map(lambda v: json.dumps(v).encode())))
def test_parse_send_reply_raises_nothing_but_reply_error(body: bytes) -> None:
    try:
        reply = parse_send_reply(body)
    except ReplyError:
        return
    assert isinstance(reply, SendReply) and reply.status in ("S", "F", "U")
    assert all(isinstance(key, str) for key in reply.results)
