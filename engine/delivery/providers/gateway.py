"""The gateway provider: messages POSTed in batches of at most 20 to the platform's HTTP gateway.

Request ``{"messages": [{"messageId", "customerId", "messageChannel", "messageContent"}]}``,
reply ``{"messageSendResults": [{"messageId", "success", "retry"}]}`` (SPEC section 6).

Retries work in rounds so that one ``send`` call sleeps once per round, not once per request:
every round posts the still-pending messages in batches; a message marked ``retry=true`` (or
missing from the reply) stays pending, ``retry=false`` is failed at once. When a request as a
whole fails (timeout, connection error, 5xx, 429, unreadable reply) the gateway is struggling, so
the rest of that round is put off to the next round instead of hammering it; the same messages
go again with the same ids, which the gateway uses as idempotency keys. After ``max_attempts``
rounds whatever is still pending is failed with the last error seen. A ``send`` therefore takes
at most about ``max_attempts * (timeout + backoff_cap)`` seconds when the gateway is down.

A reply is read as it streams in, at most ``REPLY_MAX_BYTES`` of it (after any decompression) and
within ``timeout``, then parsed as bounded JSON (``engine.jsonlimits``). A reply that is too big,
too slow, too deep or not JSON says nothing about what was sent: it is an unreadable reply, so
the batch is retried with the same ids and never counted as sent.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any, Callable, Mapping, Sequence

import httpx

from engine import jsonlimits
from engine.errors import CampaignsError

from .base import Delivery, Message, wrong_channel

CONTENT_MAX = 4096
"""Characters of ``messageContent`` (the JSON text) the gateway accepts."""

GATEWAY_CHANNELS = {"push": "PUSH", "sms": "SMS", "inbox-ewallet": "INBOX", "inbox-miniprogram": "INBOX"}
INBOXES = {"inbox-ewallet": "ewallet", "inbox-miniprogram": "miniprogram"}
_BODY_EXCERPT = 200
REPLY_MAX_BYTES = jsonlimits.MiB
"""A reply of 20 results is about 2 KB; a megabyte is no reply, it is a fault or an attack."""


def message_content(message: Message) -> str:
    """The ``messageContent`` JSON text: title, content, redirection and, for inboxes, which one."""
    body: dict[str, Any] = {
        "title": message.title,
        "content": message.content,
        "redirection": message.redirection,
    }
    inbox = INBOXES.get(message.channel)
    if inbox is not None:
        body["inbox"] = inbox
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


class _BatchFailure(Exception):
    """The request as a whole went wrong; ``retryable`` says whether sending it again may help."""

    def __init__(self, error: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.retryable = retryable
        self.retry_after = retry_after


class Gateway:
    """Delivers the messages of one channel through the HTTP gateway at ``url``.

    ``backoff_base``/``backoff_cap`` bound the sleep between rounds (exponential with jitter:
    round ``n`` sleeps between half and all of ``min(cap, base * 2**(n-1))``); ``sleep`` and
    ``rng`` are injectable so tests and a stopping executor control the waiting.
    """

    def __init__(
        self,
        url: str,
        token: str,
        channel: str,
        *,
        timeout: float = 10.0,
        max_attempts: int = 5,
        batch_size: int = 20,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        sleep: Callable[[float], object] = time.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if channel not in GATEWAY_CHANNELS:
            raise CampaignsError(f"the gateway cannot deliver channel {channel!r}")
        if not 1 <= batch_size <= 20:
            raise ValueError("batch_size must be between 1 and 20")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.url = url
        self.channel = channel
        self.max_attempts = max_attempts
        self.batch_size = batch_size
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._sleep = sleep
        self._rng = rng
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )
        self._timeout = timeout

    # --- public -------------------------------------------------------------------------------

    def send(self, messages: Sequence[Message]) -> list[Delivery]:
        """Deliver ``messages``; one ``Delivery`` each, in order. Blocks through retries."""
        results: list[Delivery | None] = [None] * len(messages)
        attempts = [0] * len(messages)
        errors: list[str | None] = [None] * len(messages)
        contents: dict[int, str] = {}
        pending: list[int] = []
        for index, message in enumerate(messages):
            if message.channel != self.channel:
                results[index] = wrong_channel(message, self.channel)
                continue
            content = message_content(message)
            if len(content) > CONTENT_MAX:
                results[index] = Delivery(
                    message.message_id,
                    "failed",
                    0,
                    f"message content is {len(content)} characters as JSON; the gateway takes at most {CONTENT_MAX}",
                )
                continue
            contents[index] = content
            pending.append(index)

        for round_ in range(1, self.max_attempts + 1):
            if not pending:
                break
            still: list[int] = []
            retry_after: float | None = None
            for start in range(0, len(pending), self.batch_size):
                batch = pending[start : start + self.batch_size]
                for index in batch:
                    attempts[index] += 1
                try:
                    outcome = self._post(messages, batch, contents)
                except _BatchFailure as failure:
                    for index in batch:
                        errors[index] = failure.error
                    if not failure.retryable:
                        for index in batch:
                            results[index] = Delivery(messages[index].message_id, "failed", attempts[index], failure.error)
                        continue
                    retry_after = failure.retry_after
                    still.extend(batch)
                    # The gateway is struggling: put off the rest of this round, without counting it.
                    deferred = pending[start + self.batch_size :]
                    for index in deferred:
                        errors[index] = f"held back: {failure.error}"
                    still.extend(deferred)
                    break
                for index in batch:
                    message_id = messages[index].message_id
                    verdict = outcome.get(message_id)
                    if verdict is None:
                        errors[index] = "the gateway's reply did not mention the message"
                        still.append(index)
                        continue
                    success, retry, reason = verdict
                    if success:
                        results[index] = Delivery(message_id, "sent", attempts[index])
                    elif retry:
                        errors[index] = "the gateway asked to retry the message" + reason
                        still.append(index)
                    else:
                        error = "the gateway refused the message (retry=false)" + reason
                        results[index] = Delivery(message_id, "failed", attempts[index], error)
            pending = still
            if pending and round_ < self.max_attempts:
                self._sleep(self._backoff(round_, retry_after))

        for index in pending:
            tries = attempts[index]
            if tries:
                note = f"gave up after {tries} attempt{'s' if tries != 1 else ''}"
            else:
                note = f"never posted: the gateway kept failing for {self.max_attempts} rounds"
            results[index] = Delivery(messages[index].message_id, "failed", tries, f"{errors[index]} ({note})")
        assert all(result is not None for result in results)
        return results  # type: ignore[return-value]

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals ----------------------------------------------------------------------------

    def _backoff(self, round_: int, retry_after: float | None) -> float:
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** (round_ - 1))
        delay = ceiling / 2 + self._rng() * ceiling / 2
        if retry_after is not None:  # the gateway said when; honour it within the cap
            delay = max(delay, min(retry_after, self.backoff_cap))
        return delay

    def _post(
        self, messages: Sequence[Message], batch: list[int], contents: Mapping[int, str]
    ) -> dict[str, tuple[bool, bool, str]]:
        """POST one batch; per message id: (success, retry, ": reason" or ""). Raises ``_BatchFailure``."""
        gateway_channel = GATEWAY_CHANNELS[self.channel]
        payload = {
            "messages": [
                {
                    "messageId": messages[index].message_id,
                    "customerId": messages[index].user_id,
                    "messageChannel": gateway_channel,
                    "messageContent": contents[index],
                }
                for index in batch
            ]
        }
        # ASCII escapes: any str can be sent, even one with a lone surrogate that UTF-8 refuses.
        body = json.dumps(payload, separators=(",", ":")).encode("ascii")
        try:
            with self._client.stream("POST", self.url, content=body) as response:
                raw = _read_capped(response, self.url, self._timeout)
        except httpx.TimeoutException:
            raise _BatchFailure(f"no answer from the gateway {self.url} within {self._timeout:g} s", retryable=True)
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            raise _BatchFailure(f"cannot reach the gateway {self.url}: {reason}", retryable=True)
        except httpx.RequestError as exc:  # a reply that cannot be decoded (bad gzip, ...)
            reason = str(exc) or type(exc).__name__
            raise _BatchFailure(f"the gateway {self.url} sent an unreadable reply ({reason})", retryable=True)
        status = response.status_code
        if status == 429 or status >= 500:
            raise _BatchFailure(
                f"the gateway {self.url} answered HTTP {status}{_excerpt(raw)}",
                retryable=True,
                retry_after=_retry_after(response),
            )
        if status >= 400:
            raise _BatchFailure(f"the gateway {self.url} refused the request: HTTP {status}{_excerpt(raw)}", retryable=False)
        if not 200 <= status < 300:
            raise _BatchFailure(f"the gateway {self.url} answered HTTP {status}", retryable=True)
        return _read_results(raw, self.url)


def _read_capped(response: httpx.Response, url: str, timeout: float) -> bytes:
    """The reply's body, at most ``REPLY_MAX_BYTES`` and within ``timeout``; else a retryable failure."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > REPLY_MAX_BYTES:
        raise _BatchFailure(
            f"the gateway {url} sent a reply of {int(declared):,} bytes; at most {REPLY_MAX_BYTES:,} are read",
            retryable=True,
        )
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > REPLY_MAX_BYTES:
            raise _BatchFailure(f"the gateway {url} sent a reply over {REPLY_MAX_BYTES:,} bytes", retryable=True)
        if time.monotonic() > deadline:
            raise _BatchFailure(f"the gateway {url} took over {timeout:g} s to send its reply", retryable=True)
        chunks.append(chunk)
    return b"".join(chunks)


def _read_results(raw: bytes, url: str) -> dict[str, tuple[bool, bool, str]]:
    """Per message id its verdict; an unreadable reply is retryable (the ids make it safe)."""
    try:
        reply = jsonlimits.loads(raw, what="the reply", max_bytes=REPLY_MAX_BYTES)
        rows = reply["messageSendResults"]
        if not isinstance(rows, list):
            raise TypeError("messageSendResults is not a list")
        verdicts: dict[str, tuple[bool, bool, str]] = {}
        for row in rows:
            if not isinstance(row, dict) or not isinstance(row.get("messageId"), str):
                continue
            reason = row.get("error") or row.get("message") or row.get("reason")  # not in SPEC; kept if sent
            detail = f": {reason}" if isinstance(reason, str) and reason else ""
            verdicts[row["messageId"]] = (row.get("success") is True, row.get("retry") is True, detail)
        return verdicts
    except (jsonlimits.JSONLimitError, KeyError, TypeError) as exc:
        raise _BatchFailure(f"the gateway {url} sent an unreadable reply ({exc}){_excerpt(raw)}", retryable=True)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
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
