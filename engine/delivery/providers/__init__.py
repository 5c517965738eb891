"""Message providers: how a rendered message leaves campaigns-as-code, chosen per channel.

    from contextlib import closing
    with closing(open_provider("push", platform, repo_root)) as provider:
        deliveries = provider.send(messages)   # one Delivery per Message, same order

``platform.yaml``'s ``providers`` maps a channel (or ``default``) to ``outbox`` or ``gateway``;
the channel's own entry wins, then ``default``, then an outbox at ``.campaigns/outbox``.
httpx is imported only when a gateway is opened.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from engine.config.models import GatewayProvider, OutboxProvider
from engine.config.names import CHANNELS
from engine.errors import CampaignsError

from .base import MESSAGE_ID_MAX, Delivery, Message, Provider
from .outbox import OUTBOX_KEYS, Outbox

if TYPE_CHECKING:
    from engine.config.models import Platform

    from .gateway import Gateway

__all__ = [
    "MESSAGE_ID_MAX",
    "OUTBOX_KEYS",
    "Delivery",
    "Gateway",
    "Message",
    "Outbox",
    "Provider",
    "describe_provider",
    "open_provider",
    "provider_config",
]


def __getattr__(name: str) -> object:
    if name == "Gateway":  # imported on first use: it pulls in httpx
        from .gateway import Gateway

        return Gateway
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def provider_config(channel: str, platform: Platform) -> OutboxProvider | GatewayProvider:
    """The provider settings for ``channel``: its own entry, else ``default``, else the outbox."""
    if channel not in CHANNELS:
        raise CampaignsError(f"unknown channel {channel!r}; expected one of {', '.join(CHANNELS)}")
    providers = platform.providers
    return providers.get(channel) or providers.get("default") or OutboxProvider(type="outbox")  # type: ignore[call-overload]


def describe_provider(channel: str, platform: Platform, base_dir: Path, *, env: Mapping[str, str] = os.environ) -> str:
    """One line saying what delivers ``channel`` (for logs), without opening it: ``outbox
    <folder>`` or ``gateway <url>``. CampaignsError when it could not be opened (e.g. the
    gateway's token variable is not set in ``env``)."""
    config = provider_config(channel, platform)
    if isinstance(config, GatewayProvider):
        from .gateway import token_from_env

        entry = "platform.yaml providers." + (channel if channel in platform.providers else "default")
        token_from_env(config.token_env, env, entry)
        return f"gateway {config.url}"
    return f"outbox {_outbox_folder(config, base_dir)}"


def _outbox_folder(config: OutboxProvider, base_dir: Path) -> Path:
    """Relative outbox paths resolve against the repository root."""
    directory = Path(config.path).expanduser()
    return directory if directory.is_absolute() else Path(base_dir) / directory


def open_provider(
    channel: str, platform: Platform, base_dir: Path, *, env: Mapping[str, str] = os.environ
) -> Provider:
    """Open the provider that delivers ``channel``; close it when done.

    Relative outbox paths resolve against ``base_dir`` (the repository root). A gateway whose
    token variable is missing from ``env`` is a ``CampaignsError`` here, before anything is sent.
    """
    config = provider_config(channel, platform)
    if isinstance(config, GatewayProvider):
        from .gateway import Gateway, token_from_env

        entry = "platform.yaml providers." + (channel if channel in platform.providers else "default")
        token = token_from_env(config.token_env, env, entry)
        return Gateway(
            config.url,
            token,
            channel,
            timeout=config.timeout,
            max_attempts=config.max_attempts,
            batch_size=config.batch_size,
        )
    return Outbox(_outbox_folder(config, base_dir), channel)
