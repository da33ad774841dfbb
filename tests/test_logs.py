"""Log lines: every line about a job names it (and its sunra request id), as text or JSON lines, and no
format ever shows a secret."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.logs import bind_job, log_handler
from tests.world import SUNRA_KEY, running_world

DISCORD_TOKEN = "discord-token-very-secret-0123"


def settings(log_format: str) -> Settings:
    return Settings(discord_token=DISCORD_TOKEN, sunra_key=SUNRA_KEY, log_format=log_format)


@contextlib.contextmanager
def captured(log_format: str, **overrides: Any) -> Iterator[io.StringIO]:
    """The bot's own handler (bot.logs.log_handler) on the root logger, writing into a string."""
    stream = io.StringIO()
    handler = log_handler(settings(log_format), stream)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def test_log_format_is_text_unless_set_to_json(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(discord_token="t", sunra_key="k").log_format == "text"
    monkeypatch.setenv("LOG_FORMAT", "JSON")
    assert Settings(discord_token="t", sunra_key="k").log_format == "json"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_format_shows_a_secret_even_in_a_traceback(log_format: str) -> None:
    logger = logging.getLogger("test.logs.redaction")
    with captured(log_format) as stream:
        logger.warning("token is %s and key is %s", DISCORD_TOKEN, SUNRA_KEY)
        try:
            raise RuntimeError(f"Authorization: Key {SUNRA_KEY}; Bot {DISCORD_TOKEN}")
        except RuntimeError:
            logger.exception("request failed")
        logger.info("where %s", SUNRA_KEY, stack_info=True)
    out = stream.getvalue()
    assert SUNRA_KEY not in out and DISCORD_TOKEN not in out
    assert "RuntimeError" in out and out.count("[redacted]") >= 5
    if log_format == "json":
        lines = [json.loads(line) for line in out.splitlines()]
        assert [line["level"] for line in lines] == ["WARNING", "ERROR", "INFO"]
        assert "Traceback" in lines[1]["exc"] and "[redacted]" in lines[1]["exc"]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_pools_reconnection_warnings_are_one_line_each_without_a_secret(log_format: str) -> None:
    """asyncpg's pool logs a traceback each second while PostgreSQL is down; the bot's handler makes
    each one line, the error at its end (scrubbed), and leaves every other logger's traceback alone."""
    with captured(log_format) as stream:
        for _ in range(2):
            try:
                raise ConnectionRefusedError(f"connect to postgresql://bot:{SUNRA_KEY}@db:5432/k refused")
            except OSError:
                logging.getLogger("asyncpg.pool").warning(
                    "Failed to restore the pool connection floor; retrying", exc_info=True
                )
        try:
            raise RuntimeError("elsewhere")
        except RuntimeError:
            logging.getLogger("test.logs.other").exception("kept")
    lines = stream.getvalue().splitlines()
    assert SUNRA_KEY not in stream.getvalue()
    if log_format == "json":
        first = json.loads(lines[0])
        assert "exc" not in first and first["message"].endswith("refused)"), first
        assert "Traceback" in json.loads(lines[2])["exc"]
    else:
        said = "retrying (connect to postgresql://bot:[redacted]@db:5432/k refused)"
        assert lines[0].endswith(said) and lines[1].endswith(said), lines
        assert "test.logs.other: kept" in lines[2] and lines[3] == "Traceback (most recent call last):"


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_a_line_about_no_job_has_no_ids(log_format: str) -> None:
    with captured(log_format) as stream:
        logging.getLogger("test.logs").info("hello")
    line = stream.getvalue().strip()
    if log_format == "json":
        entry = json.loads(line)
        assert entry["job_id"] is None and entry["request_id"] is None and entry["message"] == "hello"
    else:
        assert line.endswith("test.logs: hello")


async def test_ids_stay_with_their_own_task() -> None:
    import asyncio

    async def job(job_id: int) -> None:
        bind_job(job_id, f"req-{job_id}")
        await asyncio.sleep(0.01)
        logging.getLogger("test.logs").info("working")

    with captured("json") as stream:
        await asyncio.gather(job(1), job(2))
        logging.getLogger("test.logs").info("outside")
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert sorted((e["job_id"], e["request_id"]) for e in entries if e["message"] == "working") == [
        (1, "req-1"),
        (2, "req-2"),
    ]
    [outside] = [e for e in entries if e["message"] == "outside"]
    assert outside["job_id"] is None


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_lines_logged_inside_a_job_carry_its_id_and_request_id(tmp_path: Path, log_format: str) -> None:
    with captured(log_format) as stream:
        async with running_world(tmp_path) as world:
            interaction = await world.animate()
            job = await world.ended(interaction)
    assert job.state == "delivered" and job.request_id
    out = stream.getvalue()
    assert SUNRA_KEY not in out and world.discord.token not in out
    if log_format == "json":
        entries = [json.loads(line) for line in out.splitlines()]
        [delivered] = [e for e in entries if "video delivered" in e["message"]]
        assert (delivered["job_id"], delivered["request_id"]) == (job.id, job.request_id)
        # Every line that names the job in its text also carries its id as a field.
        about_job = [e for e in entries if f"job {job.id}:" in e["message"]]
        assert about_job and all(e["job_id"] == job.id for e in about_job)
    else:
        [delivered] = [line for line in out.splitlines() if "video delivered" in line]
        assert f"[job={job.id} req={job.request_id}] job {job.id}: video delivered" in delivered
