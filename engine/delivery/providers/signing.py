"""Alipay+-style signatures for the wallet gateway: RSA-SHA256 over the method, path, client id,
time and body.

A request carries ``Client-Id``, ``Request-Time`` (ISO 8601 with its offset) and
``Signature: algorithm=RSA256, keyVersion=N, signature=<url-encoded base64>``, where the
signature is RSA PKCS#1 v1.5 with SHA-256 over the UTF-8 text::

    POST /v2/platform/message/send
    <client-id>.<request-time>.<body>

The wallet signs its reply the same way with ``Response-Time`` instead of ``Request-Time``;
``Verifier`` checks it with the wallet's public key. Keys are PEM text read from environment
variables (``private_key_env``, ``wallet_public_key_env``) so they never sit in the repository.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Mapping
from urllib.parse import quote, unquote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from engine.errors import CampaignsError

ALGORITHM = "RSA256"
_FIELD = re.compile(r"\s*([A-Za-z]+)\s*=\s*([^,]*)")


def signed_content(method: str, path: str, client_id: str, when: str, body: bytes) -> bytes:
    """The bytes that are signed: ``"<METHOD> <path>\\n<client-id>.<time>.<body>"``."""
    return f"{method} {path}\n{client_id}.{when}.".encode() + body


def request_time(now: dt.datetime | None = None) -> str:
    """``Request-Time`` as Alipay+ sends it: ISO 8601 with milliseconds and the UTC offset."""
    moment = now or dt.datetime.now(dt.timezone.utc)
    return moment.isoformat(timespec="milliseconds")


def signature_header(signature: bytes, key_version: int) -> str:
    """``algorithm=RSA256, keyVersion=N, signature=<url-encoded base64>``."""
    encoded = quote(base64.b64encode(signature).decode("ascii"), safe="")
    return f"algorithm={ALGORITHM}, keyVersion={key_version}, signature={encoded}"


def parse_signature_header(value: str) -> dict[str, str]:
    """The header's fields (``algorithm``, ``keyVersion``, ``signature`` url-decoded); empty when unreadable."""
    fields = {match.group(1): match.group(2).strip() for match in _FIELD.finditer(value or "")}
    if "signature" in fields:
        fields["signature"] = unquote(fields["signature"])
    return fields


class Signer:
    """Signs requests with the partner's RSA private key."""

    def __init__(self, private_key_pem: str | bytes, client_id: str, key_version: int = 1) -> None:
        data = private_key_pem.encode() if isinstance(private_key_pem, str) else private_key_pem
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as problem:
            raise CampaignsError(f"the gateway private key is not an unencrypted PEM private key ({problem})") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise CampaignsError("the gateway private key is not an RSA key; RSA256 signatures need one")
        self._key = key
        self.client_id = client_id
        self.key_version = key_version

    def sign(self, content: bytes) -> bytes:
        return self._key.sign(content, padding.PKCS1v15(), hashes.SHA256())

    def headers(self, path: str, body: bytes, when: str | None = None) -> dict[str, str]:
        """The ``Client-Id``, ``Request-Time`` and ``Signature`` headers of one POST to ``path``."""
        moment = when or request_time()
        signature = self.sign(signed_content("POST", path, self.client_id, moment, body))
        return {
            "Client-Id": self.client_id,
            "Request-Time": moment,
            "Signature": signature_header(signature, self.key_version),
        }


class Verifier:
    """Checks signatures made with an RSA public key (the wallet's, on replies; the partner's, in the sandbox)."""

    def __init__(self, public_key_pem: str | bytes) -> None:
        data = public_key_pem.encode() if isinstance(public_key_pem, str) else public_key_pem
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError) as problem:
            raise CampaignsError(f"the wallet public key is not a PEM public key ({problem})") from None
        if not isinstance(key, rsa.RSAPublicKey):
            raise CampaignsError("the wallet public key is not an RSA key")
        self._key = key

    def problem(self, headers: Mapping[str, str], path: str, client_id: str, body: bytes, time_header: str) -> str | None:
        """None when ``headers`` carry a valid signature of ``body``; else what is wrong, in a few words."""
        value = headers.get("Signature")
        if not value:
            return "no Signature header"
        fields = parse_signature_header(value)
        if fields.get("algorithm") != ALGORITHM:
            return f"signature algorithm {fields.get('algorithm')!r}, expected {ALGORITHM}"
        when = headers.get(time_header)
        if not when:
            return f"no {time_header} header"
        signed_by = headers.get("Client-Id") or client_id
        try:
            signature = base64.b64decode(fields.get("signature", ""), validate=True)
        except ValueError:
            return "the signature is not base64"
        try:
            self._key.verify(signature, signed_content("POST", path, signed_by, when, body), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return "the signature does not verify"
        return None


def pem_from_env(name: str, env: Mapping[str, str], where: str, what: str) -> str:
    """The PEM text in environment variable ``name``, or a one-line error naming it and the entry."""
    value = env.get(name)
    if not value:
        state = "is empty" if name in env else "is not set"
        raise CampaignsError(f"{where}: the environment variable {name} {state}; it must hold {what}")
    return value
