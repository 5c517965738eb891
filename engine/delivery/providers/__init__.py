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
from typing import TYPE_CHECKING, Any, Mapping

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
    return providers.get(channel) or providers.get("default") or OutboxProvider(type="outbox")


def describe_provider(channel: str, platform: Platform, base_dir: Path, *, env: Mapping[str, str] = os.environ) -> str:
    """One line saying what delivers ``channel`` (for logs), without opening it: ``outbox
    <folder>`` or ``gateway <url>``. CampaignsError when it could not be opened (e.g. the
    gateway's token variable is not set in ``env``)."""
    config = provider_config(channel, platform)
    if isinstance(config, GatewayProvider):
        entry = "platform.yaml providers." + (channel if channel in platform.providers else "default")
        _credentials(config, env, entry)
        return f"gateway {config.url}"
    return f"outbox {_outbox_folder(config, base_dir)}"


def _credentials(config: GatewayProvider, env: Mapping[str, str], entry: str) -> tuple[str | None, Any, Any]:
    """The bearer token, request signer and reply verifier a gateway entry names (each may be
    None); CampaignsError naming the variable when one it names is missing or unreadable."""
    from .gateway import token_from_env
    from .signing import Signer, Verifier, pem_from_env

    token = token_from_env(config.token_env, env, entry) if config.token_env else None
    signer = verifier = None
    if config.private_key_env and config.client_id:
        pem = pem_from_env(config.private_key_env, env, entry, "the PEM RSA private key that signs gateway requests")
        try:
            signer = Signer(pem, config.client_id, config.key_version)
        except CampaignsError as problem:
            raise CampaignsError(f"{entry}: {config.private_key_env}: {problem}") from None
    if config.wallet_public_key_env:
        pem = pem_from_env(config.wallet_public_key_env, env, entry, "the wallet's PEM public key that signs its replies")
        try:
            verifier = Verifier(pem)
        except CampaignsError as problem:
            raise CampaignsError(f"{entry}: {config.wallet_public_key_env}: {problem}") from None
    return token, signer, verifier


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
        from .gateway import Gateway

        entry = "platform.yaml providers." + (channel if channel in platform.providers else "default")
        token, signer, verifier = _credentials(config, env, entry)
        return Gateway(
            config.url,
            token,
            channel,
            timeout=config.timeout,
            max_attempts=config.max_attempts,
            batch_size=config.batch_size,
            concurrency=config.concurrency,
            signer=signer,
            verifier=verifier,
        )
    return Outbox(_outbox_folder(config, base_dir), channel)
