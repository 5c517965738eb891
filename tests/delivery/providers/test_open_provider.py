"""Choosing a channel's provider from platform.yaml."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from engine.config.models import Platform
from engine.delivery.providers import Gateway, Message, Outbox, open_provider
from engine.errors import CampaignsError

SITES = {"ph": {"name": "PH", "timezone": "Asia/Manila", "channels": ["push", "sms", "inbox-ewallet"]}}


def platform(providers: dict | None = None) -> Platform:
    data: dict = {"sites": SITES}
    if providers is not None:
        data["providers"] = providers
    return Platform.model_validate(data)


def one(channel: str) -> list[Message]:
    return [Message(f"m-{channel}", "t", "once", "u-1", channel, "c", "T", "C", "https://x.example")]


def test_without_providers_the_outbox_is_under_the_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path.parent)  # relative paths follow base_dir, not the working directory
    provider = open_provider("push", platform(), tmp_path)
    try:
        provider.send(one("push"))
    finally:
        provider.close()
    assert (tmp_path / ".campaigns" / "outbox" / "push.jsonl").is_file()


def test_the_channel_entry_wins_over_default(tmp_path: Path) -> None:
    p = platform(
        {
            "default": {"type": "outbox", "path": "out/default"},
            "sms": {"type": "outbox", "path": str(tmp_path / "abs" / "sms-box")},
        }
    )
    for channel in ("push", "sms"):
        provider = open_provider(channel, p, tmp_path)
        try:
            provider.send(one(channel))
        finally:
            provider.close()
    assert (tmp_path / "out" / "default" / "push.jsonl").is_file()
    assert (tmp_path / "abs" / "sms-box" / "sms.jsonl").is_file()
    assert not (tmp_path / "out" / "default" / "sms.jsonl").exists()


def test_gateway_token_missing_is_a_clear_error_at_open(tmp_path: Path) -> None:
    p = platform({"default": {"type": "gateway", "url": "https://gw.example/send", "token_env": "GW_TOKEN"}})
    with pytest.raises(CampaignsError, match=r"providers\.default.*GW_TOKEN is not set"):
        open_provider("sms", p, tmp_path, env={})
    with pytest.raises(CampaignsError, match="GW_TOKEN is empty"):
        open_provider("sms", p, tmp_path, env={"GW_TOKEN": ""})


def test_gateway_is_chosen_for_its_channel_only(tmp_path: Path) -> None:
    p = platform({"push": {"type": "gateway", "url": "https://gw.example/send", "token_env": "GW_TOKEN"}})
    push = open_provider("push", p, tmp_path, env={"GW_TOKEN": "t"})
    sms = open_provider("sms", p, tmp_path, env={})
    try:
        assert isinstance(push, Gateway)
        assert push.channel == "push" and push.url == "https://gw.example/send"
        assert isinstance(sms, Outbox)
    finally:
        push.close()
        sms.close()


def test_unknown_channel_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CampaignsError, match="unknown channel 'fax'"):
        open_provider("fax", platform(), tmp_path)


def test_importing_providers_does_not_import_httpx() -> None:
    import subprocess

    code = "import sys, engine.delivery.providers; print('httpx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
