"""Issue 19, item 7: credentials in URLs never reach a log line (discord.py's own included), a
traceback, or `kling-bot check`'s output."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import pytest
from discord.http import Route

from bot.check import Finding
from bot.logs import log_handler
from bot.redact import REDACTED, redact_urls
from tests.world import running_world

TOKEN = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5OmxpdmUtdG9rZW4tMDEyMzQ1Njc4OQ"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("proxy http://alice:hunter2@proxy.lan:3128 refused", "hunter2"),
        ("postgresql://bot:pa55word@db:5432/kling", "pa55word"),
        ("socks5://onlytoken@proxy:1080", "onlytoken"),
        (f"POST https://discord.com/api/v10/webhooks/1234567890/{TOKEN}/messages/@original", TOKEN),
        (f"POST https://discord.com/api/v10/interactions/1234567890/{TOKEN}/callback", TOKEN),
        ("GET https://cdn.example/v.mp4?X-Amz-Signature=abcdef0123&X-Amz-Date=1", "abcdef0123"),
        ("https://cdn.discordapp.com/attachments/1/2/a.png?ex=1&is=2&hm=deadbeefcafe&", "deadbeefcafe"),
        ("https://files.example/x?token=t0k3nvalue#frag", "t0k3nvalue"),
        ("https://api.example/?api_key=k3yvalue&x=1", "k3yvalue"),
    ],
)
def test_credentials_in_urls_are_redacted(text: str, secret: str) -> None:
    shown = redact_urls(text)
    assert secret not in shown and REDACTED in shown


def test_the_rest_of_a_url_stays_readable_and_huge_lines_cost_one_pass() -> None:
    assert redact_urls("GET https://cdn.example/v.mp4?X-Amz-Date=1 failed") == (
        "GET https://cdn.example/v.mp4?X-Amz-Date=1 failed"
    )
    for text in ("https://" + "a" * 1_000_000, "?" + "sig" * 333_333, "/webhooks/1/" + "a" * 1_000_000):
        redact_urls(text)


def test_check_output_never_shows_a_proxys_password() -> None:
    finding = Finding(
        "fail", "sunra key", "cannot reach https://api.sunra.ai/v1 (ProxyError: http://u:s3cr3t@p:8080)"
    )
    assert "s3cr3t" not in finding.line()


def test_a_traceback_is_redacted_too() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("test.redact.traceback")
    handler = log_handler_for(stream)
    logger.addHandler(handler)
    try:
        try:
            raise ConnectionError("via http://user:tr4ceback@proxy:3128")
        except ConnectionError:
            logger.exception("download failed")
    finally:
        logger.removeHandler(handler)
    assert "tr4ceback" not in stream.getvalue() and "ConnectionError" in stream.getvalue()


def log_handler_for(stream: io.StringIO) -> logging.Handler:
    from bot.config import ToolSettings

    return log_handler(ToolSettings(), stream)


async def test_discord_pys_own_429_warning_loses_the_interaction_token(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        stream = io.StringIO()
        handler = log_handler_for(stream)
        discord_log = logging.getLogger("discord.http")
        discord_log.addHandler(handler)
        try:
            world.discord.inject_error("/webhooks/", status=429, retry_after=0.05, message="rate limited")
            route = Route(
                "POST", "/webhooks/{webhook_id}/{webhook_token}", webhook_id=1234, webhook_token=TOKEN
            )
            with contextlib.suppress(Exception):
                await world.bot.http.request(route, json={"content": "x"})
        finally:
            discord_log.removeHandler(handler)
        said = stream.getvalue()
        assert "responded with 429" in said, said
        assert TOKEN not in said and REDACTED in said
