"""The gateway's platform.yaml entry: bearer token or signed requests, the wallet's key,
concurrency; what a user sees when a setting or an environment variable is wrong."""

from __future__ import annotations

import re
from contextlib import closing
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import ValidationError
from sandbox_gateway import SandboxGateway

from engine.config.models import GatewayProvider, Platform
from engine.delivery.providers import Message, describe_provider, open_provider
from engine.errors import CampaignsError

SITE = {"ph": {"name": "PH", "timezone": "Asia/Manila", "channels": ["push"]}}


def pem_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def platform(**gateway) -> Platform:
    return Platform.model_validate({"sites": SITE, "providers": {"push": {"type": "gateway", "url": "http://127.0.0.1:9/send", **gateway}}})


def test_a_signed_entry_opens_a_provider_that_the_sandbox_accepts(tmp_path: Path) -> None:
    partner, wallet = pem_pair(), pem_pair()
    with SandboxGateway(client_id="c-1", client_public_key=partner[1], wallet_private_key=wallet[0]) as sandbox:
        config = platform(url=sandbox.url, client_id="c-1", private_key_env="PK", key_version=4, wallet_public_key_env="WK", concurrency=3)
        env = {"PK": partner[0], "WK": wallet[1]}
        with closing(open_provider("push", config, tmp_path, env=env)) as provider:
            assert provider.concurrency == 3
            (delivery,) = provider.send([Message("m1", "t", "once", "u1", "push", "c", "Hi", "Body", "https://x.example/a")])
        assert delivery.status == "sent"
        assert describe_provider("push", config, tmp_path, env=env) == f"gateway {sandbox.url}"


@pytest.mark.parametrize(
    "settings,message",
    [
        ({}, "a gateway needs token_env (bearer token) or client_id with private_key_env"),
        ({"client_id": "c"}, "a gateway needs token_env"),
        ({"token_env": "T", "private_key_env": "PK"}, "client_id and private_key_env go together"),
        ({"token_env": "T", "concurrency": 0}, "greater than or equal to 1"),
    ],
)
def test_an_incomplete_entry_is_refused_with_what_is_missing(settings: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        GatewayProvider.model_validate({"type": "gateway", "url": "https://w.example/v2/platform/message/send", **settings})


def test_concurrency_defaults_to_eight() -> None:
    assert GatewayProvider.model_validate({"type": "gateway", "url": "https://w.example/x", "token_env": "T"}).concurrency == 8


@pytest.mark.parametrize(
    "env,message",
    [
        ({}, "the environment variable PK is not set; it must hold the PEM RSA private key"),
        ({"PK": ""}, "the environment variable PK is empty"),
        ({"PK": "not a key"}, "PK: the gateway private key is not an unencrypted PEM private key"),
        ({"PK": "EC"}, "PK: the gateway private key is not an RSA key"),
        ({"PK": "RSA", "WK": "garbage"}, "WK: the wallet public key is not a PEM public key"),
    ],
)
def test_a_bad_key_variable_is_one_line_naming_it(tmp_path: Path, env: dict, message: str) -> None:
    if env.get("PK") == "EC":
        key = ec.generate_private_key(ec.SECP256R1())
        env["PK"] = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    elif env.get("PK") == "RSA":
        env["PK"] = pem_pair()[0]
    config = platform(client_id="c", private_key_env="PK", wallet_public_key_env="WK")
    with pytest.raises(CampaignsError) as problem:
        open_provider("push", config, tmp_path, env=env)
    text = str(problem.value)
    assert message in text and "platform.yaml providers.push" in text and "\n" not in text


@pytest.mark.parametrize(
    "settings,message",
    [
        ({}, "providers.push: needs at least one of token_env, private_key_env (has none)"),
        ({"token_env": "T", "client_id": "c"}, "providers.push: 'client_id' needs 'private_key_env'"),
    ],
)
def test_validate_names_what_a_gateway_entry_lacks(settings: dict, message: str) -> None:
    from engine.validation.filecheck import schema_findings

    data = {"sites": SITE, "providers": {"push": {"type": "gateway", "url": "https://w.example/v2/platform/message/send", **settings}}}
    assert message in [finding.message for finding in schema_findings("platform", data)]
