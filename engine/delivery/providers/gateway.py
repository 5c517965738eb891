"""The gateway provider: the wallet's message API, ``POST /v2/platform/message/send`` (SPEC section 6).

Request ``{"messages": [{"messageId" (<=64), "customerId" (<=32), "messageChannel":
"PUSH"|"SMS"|"INBOX", "redirectUrl" (<=1,024; PUSH and INBOX), "messageContent": "<JSON text
<=4,096: title, content, inbox>"}]}``, at most 20 messages a request.

Reply ``{"result": {"resultStatus", "resultCode", "resultMessage"}, "messageSendResults":
[{"messageId", "success", "retry"}]}`` (``parse_send_reply`` reads it):

- ``S``: each message's own result counts; ``retry=true`` or a message the reply leaves out is
  posted again, ``retry=false`` is ``provider-rejected``;
- ``F``: the whole request is ``provider-rejected`` with the ``resultCode`` -- except
  ``REQUEST_TRAFFIC_EXCEED_LIMIT``, which backs off, slows the channel (``pace_factor``, and a
  hold on new requests) and retries;
- ``U``, a timeout, a connection error, HTTP 5xx/429, an unreadable reply or (with a wallet
  public key) a reply whose signature does not verify: unknown, so the same messages go again
  **with the same ids** (the gateway's idempotency keys), never counted as sent.

``concurrency`` requests are in flight at once: ``send`` runs its requests as asyncio tasks on
the provider's own event loop thread over that many keep-alive connections: ``aionet.Client``
for an ``http://`` gateway reached directly (a tenth of httpx's CPU per request), one
``httpx.AsyncClient`` with a pool of that size for ``https://`` or through a proxy.
Each request retries on its own with exponential backoff and jitter; its backoff
holds no connection slot, so a retry after an answer (``U``, per-message ``retry``) never blocks
the other requests. A gateway that does not answer (timeouts, connection errors, 5xx/429), or
that has not answered yet, gets one request at a time (a probe) until it answers; when the probe
has used up ``max_attempts`` the gateway is taken to be down, and the requests of that ``send``
not posted yet are held back ("never posted") instead of hammering it.

``timeout`` is a total deadline per request (connect, send, headers and the whole body), not per
read: a gateway that trickles its reply a byte a second is cut off at ``timeout``. A reply is
read up to ``REPLY_MAX_BYTES`` and parsed as bounded JSON (``engine.jsonlimits``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import random
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import orjson

from engine import jsonlimits
from engine.delivery.pacing import MIN_PACE_FACTOR, Pace
from engine.errors import CampaignsError

from . import aionet
from .base import PROVIDER_REJECTED, PROVIDER_UNAVAILABLE, TOO_LONG, Delivery, Message, wrong_channel
from .signing import Signer, Verifier

CONTENT_MAX = 4096
"""Characters of ``messageContent`` (the JSON text) the gateway accepts."""
REDIRECT_MAX = 1024
"""Characters of ``redirectUrl`` the gateway accepts."""
CUSTOMER_ID_MAX = 32
TRAFFIC_LIMIT = "REQUEST_TRAFFIC_EXCEED_LIMIT"
"""The one ``F`` result that is retried: the wallet asks the caller to slow down."""

GATEWAY_CHANNELS = {"push": "PUSH", "sms": "SMS", "inbox-ewallet": "INBOX", "inbox-miniprogram": "INBOX"}
NEEDS_REDIRECT = {"PUSH", "INBOX"}
INBOXES = {"inbox-ewallet": "ewallet", "inbox-miniprogram": "miniprogram"}
_BODY_EXCERPT = 200
REPLY_MAX_BYTES = jsonlimits.MiB
"""A reply of 20 results is about 2 KB; a megabyte is no reply, it is a fault or an attack."""
REPLY_MAX_DEPTH = jsonlimits.DEFAULT_MAX_DEPTH
"""A reply is three levels deep; anything deeper than this is refused before it is parsed."""


# --- what is sent ----------------------------------------------------------------------------


def redirect_url(message: Message) -> str | None:
    """The top-level ``redirectUrl``: the redirection, or the first of a list of them."""
    redirection = message.redirection
    if isinstance(redirection, list):
        return redirection[0] if redirection else None
    return redirection


def message_content(message: Message) -> str:
    """The ``messageContent`` JSON text: title, content and, for inboxes, which inbox. A list
    of several redirections keeps the others as ``redirections`` (the API has one ``redirectUrl``)."""
    body: dict[str, Any] = {"title": message.title, "content": message.content}
    inbox = INBOXES.get(message.channel)
    if inbox is not None:
        body["inbox"] = inbox
    if isinstance(message.redirection, list) and len(message.redirection) > 1:
        body["redirections"] = message.redirection
    try:
        return orjson.dumps(body).decode()  # the same compact UTF-8 text as json.dumps, ten times faster
    except (orjson.JSONEncodeError, TypeError):  # a lone surrogate or a value orjson does not take
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def request_row(message: Message, gateway_channel: str, content: str) -> bytes:
    """One entry of the request's ``messages``, as JSON (UTF-8), serialised once: a request's
    body is its rows joined (``request_body``), and a retry posts the same bytes again."""
    row: dict[str, Any] = {
        "messageId": message.message_id,
        "customerId": message.user_id,
        "messageChannel": gateway_channel,
        "messageContent": content,
    }
    url = redirect_url(message)
    if url is not None:
        row["redirectUrl"] = url
    try:
        return orjson.dumps(row)
    except (orjson.JSONEncodeError, TypeError):  # a lone surrogate, which UTF-8 cannot carry: json's ASCII escapes
        return json.dumps(row, separators=(",", ":")).encode("ascii")


def request_body(rows: Sequence[bytes]) -> bytes:
    """The request's JSON body ``{"messages": [...]}`` from rows made by ``request_row``: the
    same bytes as serialising the whole document at once, without encoding any row twice."""
    return b'{"messages":[' + b",".join(rows) + b"]}"


def _refusal(message: Message, gateway_channel: str, content: str) -> Delivery | None:
    """A message the gateway's limits refuse, failed before it is posted (else None)."""
    if len(content) > CONTENT_MAX:
        return Delivery(
            message.message_id,
            "failed",
            0,
            f"message content is {len(content)} characters as JSON; the gateway takes at most {CONTENT_MAX}",
            TOO_LONG,
        )
    url = redirect_url(message)
    if url is not None and len(url) > REDIRECT_MAX:
        return Delivery(
            message.message_id, "failed", 0, f"redirectUrl is {len(url)} characters; the gateway takes at most {REDIRECT_MAX}", TOO_LONG
        )
    if not url and gateway_channel in NEEDS_REDIRECT:
        return Delivery(
            message.message_id, "failed", 0, f"{gateway_channel} messages need a redirectUrl and this one has none", PROVIDER_REJECTED, "redirectUrl-missing"
        )
    if len(message.user_id) > CUSTOMER_ID_MAX:
        return Delivery(
            message.message_id, "failed", 0, f"customerId is {len(message.user_id)} characters; the gateway takes at most {CUSTOMER_ID_MAX}", PROVIDER_REJECTED, "customerId-too-long"
        )
    return None


# --- what comes back -------------------------------------------------------------------------


class ReplyError(CampaignsError):
    """The gateway's reply cannot be read as a reply of the message API (so nothing is known)."""


@dataclass(slots=True)
class MessageResult:
    """One entry of ``messageSendResults``."""

    success: bool
    retry: bool
    detail: str = ""  # ": <the gateway's words>" when it gave any
    code: str | None = None


@dataclass(slots=True)
class SendReply:
    """A parsed reply: ``status`` S/F/U with the gateway's code and words; ``results`` per
    message id (only with ``S``; a message missing from it is not known to be sent)."""

    status: Literal["S", "F", "U"]
    code: str | None = None
    message: str | None = None
    results: dict[str, MessageResult] = field(default_factory=dict)


def parse_send_reply(body: bytes, *, max_bytes: int = REPLY_MAX_BYTES, max_depth: int = REPLY_MAX_DEPTH) -> SendReply:
    """Read the reply of ``POST /v2/platform/message/send``.

    Raises ``ReplyError`` (and nothing else) for any body that is not such a reply: over
    ``max_bytes``, deeper than ``max_depth``, not strict UTF-8 JSON, no ``result.resultStatus``
    of S/F/U, or ``messageSendResults`` that is not a list. Entries of the list that are not
    objects with a string ``messageId`` are skipped (the message counts as left out); for a
    message listed twice the first entry counts. This is the gateway reply parser fuzz targets use.
    """
    try:
        reply = jsonlimits.loads(body, what="the reply", max_bytes=max_bytes, max_depth=max_depth)
    except jsonlimits.JSONLimitError as problem:
        raise ReplyError(str(problem)) from None
    except (RecursionError, MemoryError, ValueError) as problem:  # belt and braces: never anything else
        raise ReplyError(f"the gateway's reply is not JSON ({type(problem).__name__})") from None
    if not isinstance(reply, dict):
        raise ReplyError("the gateway's reply is not a JSON object")
    result = reply.get("result")
    if not isinstance(result, dict):
        raise ReplyError("the gateway's reply has no result object")
    status = result.get("resultStatus")
    if status not in ("S", "F", "U"):
        raise ReplyError(f"the gateway's reply has resultStatus {_short(status)}, not S, F or U")
    code = result.get("resultCode")
    words = result.get("resultMessage")
    parsed = SendReply(status, _text(code), _text(words))
    if status != "S":
        return parsed
    rows = reply.get("messageSendResults", [])
    if not isinstance(rows, list):
        raise ReplyError("the gateway's messageSendResults is not a list")
    results = parsed.results
    for row in rows:
        if not isinstance(row, dict):
            continue
        message_id = row.get("messageId")
        if not isinstance(message_id, str) or message_id in results:
            continue
        success, retry = row.get("success") is True, row.get("retry") is True
        if len(row) == 1 + ("success" in row) + ("retry" in row):  # the usual row: messageId, success, retry and no words
            results[message_id] = MessageResult(success, retry)
            continue
        reason = row.get("resultMessage") or row.get("error") or row.get("message") or row.get("reason")
        detail = f": {reason}" if isinstance(reason, str) and reason else ""
        row_code = row.get("resultCode") or row.get("errorCode") or row.get("code")
        results[message_id] = MessageResult(success, retry, detail, _text(row_code))
    return parsed


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)[:_BODY_EXCERPT]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


# --- the provider ----------------------------------------------------------------------------


class _BatchFailure(Exception):
    """The request as a whole went wrong; ``retryable`` says whether sending it again may help."""

    def __init__(
        self,
        error: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        code: str | None = None,
        traffic: bool = False,
        struggling: bool = False,
    ) -> None:
        super().__init__(error)
        self.struggling = struggling  # no answer, or HTTP 5xx/429: the gateway itself is in trouble
        self.error = error
        self.retryable = retryable
        self.retry_after = retry_after
        self.code = code
        self.traffic = traffic


@dataclass
class _Send:
    """The state of one ``send`` call shared by its requests."""

    messages: Sequence[Message]
    rows: dict[int, bytes]  # each message's request_row
    results: list[Delivery | None]
    attempts: list[int]
    errors: list[str | None]
    pace: Pace | None
    stop: Callable[[], bool] | None
    semaphore: asyncio.Semaphore
    given_up: str | None = None  # the error that made one request give up: the gateway is down


class Gateway:
    """Delivers the messages of one channel through the wallet's message API at ``url``.

    Authentication: ``token`` (bearer) and/or ``signer`` (Alipay+ RSA256 signatures with
    ``Client-Id``/``Request-Time``). With ``verifier`` (the wallet's public key) a reply must
    carry a valid signature or it is an unknown result. ``backoff_base``/``backoff_cap`` bound
    the sleep between a request's attempts (attempt ``n`` sleeps between half and all of
    ``min(cap, base * 2**(n-1))``); ``sleep`` (seconds -> None, called instead of sleeping) and
    ``rng`` are injectable for tests.
    """

    def __init__(
        self,
        url: str,
        token: str | None,
        channel: str,
        *,
        timeout: float = 10.0,
        max_attempts: int = 5,
        batch_size: int = 20,
        concurrency: int = 8,
        signer: Signer | None = None,
        verifier: Verifier | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        sleep: Callable[[float], object] | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if channel not in GATEWAY_CHANNELS:
            raise CampaignsError(f"the gateway cannot deliver channel {channel!r}")
        if not 1 <= batch_size <= 20:
            raise ValueError("batch_size must be between 1 and 20")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.url = url
        self.path = urlsplit(url).path or "/"
        self.channel = channel
        self.gateway_channel = GATEWAY_CHANNELS[channel]
        self.max_attempts = max_attempts
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.pace_factor = 1.0
        """Below 1 after the wallet said REQUEST_TRAFFIC_EXCEED_LIMIT: the executor paces the
        channel at ``rate_per_second * pace_factor``; it recovers a little with each ``S`` reply."""
        self.notices: list[str] = []
        self._sleep = sleep
        self._rng = rng
        self._timeout = timeout
        self._signer = signer
        self._verifier = verifier
        self._headers = {"Content-Type": "application/json; charset=UTF-8"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._hold_until = 0.0  # no new request before (the wallet asked to slow down)
        self._probing = True  # one request at a time until the gateway has answered (see _request)
        self._probe: asyncio.Lock | None = None
        self._prober: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: aionet.Client | httpx.AsyncClient | None = None
        self._start_lock = threading.Lock()

    # --- public -------------------------------------------------------------------------------

    def send(self, messages: Sequence[Message], *, pace: Pace | None = None, stop: Callable[[], bool] | None = None) -> list[Delivery]:
        """Deliver ``messages``; one ``Delivery`` each, in order. Blocks through retries.

        ``pace`` spreads the requests at the channel's rate; ``stop`` (checked before each
        request) ends the call early: messages not posted by then are ``provider-unavailable``
        with no attempt, so they stay pending with their ids."""
        return self.submit(messages, pace=pace, stop=stop).result()

    def submit(
        self, messages: Sequence[Message], *, pace: Pace | None = None, stop: Callable[[], bool] | None = None
    ) -> concurrent.futures.Future[list[Delivery]]:
        """``send`` without waiting: the requests start on the provider's loop thread and the
        future gives the deliveries. The executor renders the next messages meanwhile, so the
        gateway is not idle while the executor's own thread works. ``stop`` is called on the
        loop thread."""
        results: list[Delivery | None] = [None] * len(messages)
        rows: dict[int, bytes] = {}
        pending: list[int] = []
        gateway_channel = self.gateway_channel
        for index, message in enumerate(messages):
            if message.channel != self.channel:
                results[index] = wrong_channel(message, self.channel)
                continue
            content = message_content(message)
            refused = _refusal(message, gateway_channel, content)
            if refused is not None:
                results[index] = refused
                continue
            rows[index] = request_row(message, gateway_channel, content)
            pending.append(index)
        if not pending:
            done: concurrent.futures.Future[list[Delivery]] = concurrent.futures.Future()
            done.set_result(results)
            return done
        size = self.batch_size
        batches = [pending[start : start + size] for start in range(0, len(pending), size)]
        loop = self._ensure_loop()
        return asyncio.run_coroutine_threadsafe(self._send_all(messages, rows, results, batches, pace, stop), loop)

    def close(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._client is not None:
            asyncio.run_coroutine_threadsafe(self._client.aclose(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = self._client = None

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the event loop -----------------------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._loop is not None:
                return self._loop
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name=f"gateway-{self.channel}", daemon=True)
            thread.start()

            async def make_client() -> aionet.Client | httpx.AsyncClient:
                if plain_http(self.url):
                    return aionet.Client(self.url, self.concurrency, self._headers)
                limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
                return httpx.AsyncClient(timeout=httpx.Timeout(self._timeout), headers=self._headers, limits=limits)

            self._client = asyncio.run_coroutine_threadsafe(make_client(), loop).result()
            self._probe = asyncio.run_coroutine_threadsafe(_new_lock(), loop).result()
            self._loop, self._thread = loop, thread
            return loop

    async def _send_all(
        self,
        messages: Sequence[Message],
        rows: dict[int, bytes],
        results: list[Delivery | None],
        batches: list[list[int]],
        pace: Pace | None,
        stop: Callable[[], bool] | None,
    ) -> list[Delivery]:
        count = len(messages)
        state = _Send(messages, rows, results, [0] * count, [None] * count, pace, stop, asyncio.Semaphore(self.concurrency))
        if len(batches) == 1:
            await self._request(state, batches[0])
        else:
            await asyncio.gather(*(self._request(state, batch) for batch in batches))
        assert all(result is not None for result in results)
        return results

    async def _pause(self, seconds: float) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
        elif seconds > 0:
            await asyncio.sleep(seconds)

    async def _request(self, state: _Send, batch: list[int]) -> None:
        """One request's messages, through its retries; settles each of them in ``state``.

        A request that got an answer it must retry (``U``, a reply that does not verify, per
        message ``retry``) backs off on its own while the others go on. But while the gateway is
        unproven (the first request of this provider) or struggling (no answer, HTTP 5xx/429),
        requests go one at a time: the one holding the probe lock retries, backoffs included,
        and the others wait for it. When it is answered they all go; when it gives up they are
        held back, never posted, instead of hammering a gateway that is down."""
        probe = self._probe
        assert probe is not None
        try:
            await self._attempts(state, batch, probe)
        finally:
            if self._prober is asyncio.current_task():
                self._prober = None
                probe.release()

    async def _attempts(self, state: _Send, batch: list[int], probe: asyncio.Lock) -> None:
        messages, results, attempts, errors = state.messages, state.results, state.attempts, state.errors
        pending = batch
        tries = 0
        retry_after: float | None = None
        stopped = False
        me = asyncio.current_task()
        while pending and tries < self.max_attempts and state.given_up is None:
            if tries:
                await self._pause(self._backoff(tries, retry_after))
                retry_after = None
                if state.given_up is not None:
                    break
            if self._probing and self._prober is not me:
                await probe.acquire()
                if self._probing and state.given_up is None:
                    self._prober = me  # this request probes; the others wait for it
                else:
                    probe.release()
                    if state.given_up is not None:
                        break
            async with state.semaphore:
                hold = self._hold_until - time.monotonic()
                if hold > 0:
                    await asyncio.sleep(hold)
                if state.stop is not None and state.stop():
                    stopped = True
                    break
                if state.pace is not None:
                    wait = state.pace.reserve(len(pending))
                    if wait > 0:
                        await asyncio.sleep(wait)
                tries += 1
                for index in pending:
                    attempts[index] += 1
                try:
                    reply = await self._post([state.rows[index] for index in pending])
                except _BatchFailure as failure:
                    for index in pending:
                        errors[index] = failure.error
                    if not failure.retryable:
                        if self._prober is me:  # it answered, if only to refuse
                            self._probing = False
                        for index in pending:
                            results[index] = Delivery(
                                messages[index].message_id, "failed", attempts[index], failure.error, PROVIDER_REJECTED, failure.code
                            )
                        return
                    retry_after = failure.retry_after
                    if failure.traffic:
                        self._slow_down(state.pace, self._backoff(tries, retry_after))
                    if failure.struggling:
                        self._probing = True  # no answer: one request at a time until it answers again
                    elif self._prober is me:  # it answered (U, traffic, a bad signature): the others may go
                        self._probing = False
                        self._prober = None
                        probe.release()
                    continue
            if self._probing and self._prober is me:  # the gateway answers again: everyone goes
                self._probing = False
                self._prober = None
                probe.release()
            self.pace_factor = min(1.0, self.pace_factor * 1.01)
            still: list[int] = []
            verdicts = reply.results
            for index in pending:
                message_id = messages[index].message_id
                verdict = verdicts.get(message_id)
                if verdict is None:
                    errors[index] = "the gateway's reply did not mention the message"
                    still.append(index)
                elif verdict.success:
                    results[index] = Delivery(message_id, "sent", attempts[index])
                elif verdict.retry:
                    errors[index] = "the gateway asked to retry the message" + verdict.detail
                    still.append(index)
                else:
                    results[index] = Delivery(
                        message_id,
                        "failed",
                        attempts[index],
                        "the gateway refused the message (retry=false)" + verdict.detail,
                        PROVIDER_REJECTED,
                        verdict.code or "retry=false",
                    )
            pending = still
        if not pending:
            return
        if not stopped and tries >= self.max_attempts and state.given_up is None:
            state.given_up = errors[pending[0]] or "no answer"
        for index in pending:
            done = attempts[index]
            if stopped and not done:
                error, note = "not posted: the executor stopped this batch (window closed, paused or stopping)", None
            elif done:
                error, note = errors[index], f"gave up after {done} attempt{'s' if done != 1 else ''}"
            else:
                error, note = f"held back: {state.given_up}", f"never posted: the gateway kept failing for {self.max_attempts} attempts"
            results[index] = Delivery(
                messages[index].message_id, "failed", done, f"{error} ({note})" if note else error, PROVIDER_UNAVAILABLE
            )

    def _slow_down(self, pace: Pace | None, hold: float) -> None:
        """The wallet said REQUEST_TRAFFIC_EXCEED_LIMIT: no new request for ``hold`` seconds, half the pace."""
        self._hold_until = max(self._hold_until, time.monotonic() + hold)
        self.pace_factor = max(MIN_PACE_FACTOR, self.pace_factor / 2)
        if pace is not None:
            pace.slow_down()
        self.notices.append(
            f"the wallet answered {TRAFFIC_LIMIT}: {self.channel} slowed to {self.pace_factor:.0%} of its pace, retrying in {hold:.1f} s"
        )

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
        delay = ceiling / 2 + self._rng() * ceiling / 2
        if retry_after is not None:  # the gateway said when; honour it within the cap
            delay = max(delay, min(retry_after, self.backoff_cap))
        return delay

    async def _post(self, rows: list[bytes]) -> SendReply:
        """POST one request; its parsed ``S`` reply, or ``_BatchFailure``."""
        body = request_body(rows)
        headers = self._signer.headers(self.path, body) if self._signer is not None else None
        url = self.url
        try:
            async with asyncio.timeout(self._timeout):  # the total deadline (no task per request, unlike wait_for)
                status, reply_headers, raw = await self._exchange(body, headers)
        except (asyncio.TimeoutError, httpx.TimeoutException):
            raise _BatchFailure(
                f"no complete answer from the gateway {url} within {self._timeout:g} s", retryable=True, struggling=True
            ) from None
        except aionet.TooLarge as big:
            if big.declared is not None:
                error = f"the gateway {url} sent a reply of {big.declared:,} bytes; at most {REPLY_MAX_BYTES:,} are read"
            else:
                error = f"the gateway {url} sent a reply over {REPLY_MAX_BYTES:,} bytes"
            raise _BatchFailure(error, retryable=True) from None
        except (aionet.NetworkError, httpx.TransportError) as exc:
            reason = str(exc) or type(exc).__name__
            raise _BatchFailure(f"cannot reach the gateway {url}: {reason}", retryable=True, struggling=True) from None
        except (aionet.DecodeError, httpx.RequestError) as exc:  # a reply that cannot be decoded (bad gzip, ...)
            reason = str(exc) or type(exc).__name__
            raise _BatchFailure(f"the gateway {url} sent an unreadable reply ({reason})", retryable=True) from None
        if status == 429 or status >= 500:
            raise _BatchFailure(
                f"the gateway {url} answered HTTP {status}{_excerpt(raw)}",
                retryable=True,
                retry_after=_retry_after(reply_headers),
                struggling=True,
            )
        if status >= 400:
            raise _BatchFailure(
                f"the gateway {url} refused the request: HTTP {status}{_excerpt(raw)}", retryable=False, code=f"HTTP {status}"
            )
        if not 200 <= status < 300:
            raise _BatchFailure(f"the gateway {url} answered HTTP {status}", retryable=True)
        if self._verifier is not None:
            client_id = self._signer.client_id if self._signer is not None else ""
            problem = self._verifier.problem(reply_headers, self.path, client_id, raw, "Response-Time")
            if problem is not None:
                raise _BatchFailure(f"the gateway {url} sent a reply that is not the wallet's ({problem}): result unknown", retryable=True)
        try:
            reply = parse_send_reply(raw)
        except ReplyError as problem:
            raise _BatchFailure(f"the gateway {url} sent an unreadable reply ({problem}){_excerpt(raw)}", retryable=True) from None
        said = f"{reply.code or 'no resultCode'}" + (f": {reply.message}" if reply.message else "")
        if reply.status == "U":
            raise _BatchFailure(f"the gateway {url} answered U (result unknown, {said})", retryable=True)
        if reply.status == "F":
            if reply.code == TRAFFIC_LIMIT:
                raise _BatchFailure(f"the gateway {url} answered F ({said})", retryable=True, traffic=True)
            raise _BatchFailure(f"the gateway {url} refused the request: F ({said})", retryable=False, code=reply.code or "F")
        return reply

    async def _exchange(self, body: bytes, headers: Mapping[str, str] | None) -> tuple[int, Mapping[str, str], bytes]:
        """The reply's status, headers and body, at most ``REPLY_MAX_BYTES`` of it (``aionet.TooLarge`` beyond)."""
        client = self._client
        assert client is not None
        if isinstance(client, aionet.Client):
            return await client.post(body, headers, REPLY_MAX_BYTES)
        async with client.stream("POST", self.url, content=body, headers=headers) as response:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > REPLY_MAX_BYTES:
                raise aionet.TooLarge(int(declared))
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > REPLY_MAX_BYTES:
                    raise aionet.TooLarge(None)
                chunks.append(chunk)
            return response.status_code, response.headers, b"".join(chunks)


def plain_http(url: str) -> bool:
    """An ``http://`` gateway reached directly (no proxy in the environment): ``aionet.Client``;
    otherwise httpx, for TLS and proxies."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "http" or not parts.hostname:
        return False
    return "http" not in urllib.request.getproxies() or bool(urllib.request.proxy_bypass(parts.hostname))


async def _new_lock() -> asyncio.Lock:
    return asyncio.Lock()


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: our own backoff is good enough


def _excerpt(raw: bytes) -> str:
    text = raw[: _BODY_EXCERPT * 4].decode("utf-8", "replace").strip().replace("\n", " ")
    if not text:
        return ""
    return ": " + (text[:_BODY_EXCERPT] + "..." if len(text) > _BODY_EXCERPT else text)


def token_from_env(token_env: str, env: Mapping[str, str], where: str) -> str:
    """The bearer token, or a clear error naming the variable and the platform.yaml entry."""
    token = env.get(token_env)
    if not token:
        state = "is empty" if token_env in env else "is not set"
        raise CampaignsError(
            f"{where}: the environment variable {token_env} {state}; it must hold the gateway's bearer token"
        )
    return token
