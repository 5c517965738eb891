"""The contract between the executor and the providers that deliver messages.

A provider gets a batch of fully rendered messages for one channel and answers with one
``Delivery`` per message, in the same order. It never raises for a message that could not be
delivered (that message is ``failed`` with an error); it raises ``CampaignsError`` only when the
provider as a whole cannot work (e.g. the outbox file cannot be written), so the executor can
stop instead of marking a million messages failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, Sequence

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
    """What became of one message: ``sent`` or ``failed`` after ``attempts`` tries."""

    message_id: str
    status: Literal["sent", "failed"]
    attempts: int
    error: str | None = None


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
    )
