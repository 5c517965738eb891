"""The contract between the executor and the providers that deliver messages.

A provider gets a batch of fully rendered messages for one channel and answers with one
``Delivery`` per message, in the same order. It never raises for a message that could not be
delivered (that message is ``failed`` with an error); it raises ``CampaignsError`` only when the
provider as a whole cannot work (e.g. the outbox file cannot be written), so the executor can
stop instead of marking a million messages failed.

Every ``failed`` delivery says why, in ``reason`` (the ledger records it; ``report --failed``
lists it), with the human detail in ``error``:

- ``provider-rejected``: the provider refused this message and sending it again will not help;
  ``code`` is the provider's own code for it (e.g. a gateway ``resultCode``, ``HTTP 400``,
  ``retry=false``).
- ``provider-unavailable``: the provider could not take it (unreachable, timeouts, 5xx, asked to
  retry) and its own retries are exhausted; ``error`` is the last error seen. The message may be
  sent again later **with the same id**: the executor keeps the row pending and retries it with
  backoff until the occurrence's window closes.
- ``too-long``: the message is over the provider's own limit (e.g. the gateway's 4,096
  characters of ``messageContent``); never sent.

A ``failed`` delivery without a reason counts as ``provider-rejected``. A provider may also
keep ``notices``: a list of strings about the provider itself (e.g. the outbox repaired a torn
last line on open), which the executor logs and clears.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, Sequence

PROVIDER_REJECTED = "provider-rejected"
PROVIDER_UNAVAILABLE = "provider-unavailable"
TOO_LONG = "too-long"
Reason = Literal["provider-rejected", "provider-unavailable", "too-long"]
"""Why a provider failed a message (``Delivery.reason``)."""

MESSAGE_ID_MAX = 64
"""Message ids travel to gateways as idempotency keys; 64 characters is the agreed bound."""


@dataclass(slots=True)
class Message:
    """One rendered message for one user; ``message_id`` is deterministic and the idempotency key.

    Not frozen: the executor builds a million of these per fan-out, and a frozen dataclass's
    ``__init__`` (``object.__setattr__`` per field) costs four times as much. Treat as read-only."""

    message_id: str
    task: str
    occurrence: str  # "once", "YYYY-MM-DD", or "test" for pilot tests
    user_id: str
    channel: str  # push | sms | inbox-ewallet | inbox-miniprogram
    creative: str
    title: str | None
    content: str | None
    redirection: str | list[str] | None


@dataclass(slots=True)
class Delivery:
    """What became of one message: ``sent`` or ``failed`` after ``attempts`` tries; a failed
    one has a ``reason`` (see the module doc) and, for ``provider-rejected``, the provider's
    ``code``."""

    message_id: str
    status: Literal["sent", "failed"]
    attempts: int
    error: str | None = None
    reason: Reason | None = None
    code: str | None = None

    @property
    def retryable(self) -> bool:
        """The provider could not take it: the same message may go again, with the same id."""
        return self.status == "failed" and self.reason == PROVIDER_UNAVAILABLE


class Provider(Protocol):
    """Delivers messages of one channel. Not thread-safe: one provider per thread or process."""

    channel: str

    def send(self, messages: Sequence[Message]) -> list[Delivery]:
        """Deliver ``messages``; one ``Delivery`` per message, same order, no per-message raise."""
        ...

    def close(self) -> None:
        """Release files and connections; the provider is unusable afterwards."""
        ...


def wrong_channel(message: Message, channel: str) -> Delivery:
    """A message routed to the provider of another channel is refused, never sent by the wrong path."""
    return Delivery(
        message.message_id,
        "failed",
        0,
        f"message for channel {message.channel!r} was given to the {channel!r} provider",
        PROVIDER_REJECTED,
        "wrong-channel",
    )
