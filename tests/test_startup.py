"""Start-up before the network: the real bot (`python -m bot`) started against services not there yet.

A container often starts before its network. The bot must then wait, saying so in one line per attempt,
without a traceback and without exiting, and come up when the service does; a token Discord refuses
still stops it at once with its one line.
"""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

from tests.fakes import payloads as p
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.sunra_server import FakeSunra
from tests.test_crash import SUNRA_KEY, BotProcess, Crash

# Short pauses keep the test fast; the defaults (2 s, doubling to 60 s) are for real hosts.
FAST_RETRY = {"STARTUP__RETRY_FIRST_SECONDS": "0.1", "STARTUP__RETRY_MAX_SECONDS": "0.4"}
ATTEMPT_LINE = re.compile(
    r" WARNING  bot\.startup: (Discord|Discord's gateway) is unreachable at (\S+) \((.+)\); "
    r"attempt (\d+), retrying in ([\d.]+) s$"
)


def closed_port() -> int:
    """A loopback port nothing listens on (yet): connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def until(predicate: object, what: str, bot: BotProcess, timeout: float = 15.0) -> None:  # noqa: ASYNC109
    assert callable(predicate)
    async with asyncio.timeout(timeout):
        while not predicate():
            if bot.proc is not None and not bot.running:
                raise AssertionError(f"the bot exited while waiting for {what}\n{bot.tail()}")
            await asyncio.sleep(0.05)


def attempt_lines(bot: BotProcess) -> list[re.Match[str]]:
    return [m for line in bot.log_text().splitlines() if (m := ATTEMPT_LINE.search(line))]


async def test_discord_unreachable_at_start_is_waited_for_then_the_bot_comes_up(tmp_path: Path) -> None:
    discord = FakeDiscord(port=closed_port())  # not started: its port refuses connections
    async with FakeSunra(key=SUNRA_KEY) as sunra:
        bot = BotProcess(tmp_path, discord, sunra, **FAST_RETRY)
        starting = asyncio.create_task(bot.start())
        try:
            await until(lambda: len(attempt_lines(bot)) >= 4, "four attempts", bot)
            assert bot.running
            async with discord:  # the network comes up
                await starting  # READY on the gateway, /animate registered
                crash = Crash(discord, sunra, bot)  # type: ignore[arg-type]
                interaction = await crash.animate("the cat waves")
                [row] = await crash.wait_settled()
                assert row["interaction_id"] == str(interaction.id) and row["state"] == "delivered"
                await bot.stop()
        finally:
            starting.cancel()
            await bot.stop()
    log = bot.log_text()
    attempts = attempt_lines(bot)
    assert [int(m[4]) for m in attempts] == list(range(1, len(attempts) + 1))
    assert {m.group(1, 2, 3) for m in attempts} == {
        ("Discord", discord.api_url, "cannot connect: connection refused")
    }
    pauses = [float(m[5]) for m in attempts]
    assert pauses[0] <= 0.1 and max(pauses) <= 0.4 and pauses[-1] > pauses[0]  # backoff, bounded
    assert "Traceback" not in log and discord.token not in log and SUNRA_KEY not in log
    assert bot.proc is not None and bot.proc.returncode == 0


async def forward(port: int, to_port: int) -> asyncio.Server:
    """A TCP relay from `port` to `to_port` on loopback: a gateway proxy that starts late."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", to_port)
        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))

    return await asyncio.start_server(relay, "127.0.0.1", port)


async def test_a_gateway_unreachable_at_start_is_waited_for_too(tmp_path: Path) -> None:
    # discord.py cannot retry a first gateway connection that fails (AttributeError on its retry path):
    # a gateway proxy that starts after the bot used to kill it.
    port = closed_port()
    async with FakeDiscord() as discord, FakeSunra(key=SUNRA_KEY) as sunra:
        gateway_url = discord.gateway_url.replace(f":{discord.port}", f":{port}")
        bot = BotProcess(tmp_path, discord, sunra, DISCORD_GATEWAY_URL=gateway_url, **FAST_RETRY)
        starting = asyncio.create_task(bot.start())
        try:
            await until(lambda: len(attempt_lines(bot)) >= 3, "three attempts", bot)
            async with await forward(port, discord.port):
                await starting
                await bot.stop()
        finally:
            starting.cancel()
            await bot.stop()
    attempts = attempt_lines(bot)
    assert {m.group(1, 2, 3) for m in attempts} == {
        ("Discord's gateway", gateway_url, "cannot connect: connection refused")
    }
    assert "Traceback" not in bot.log_text()
    assert bot.proc is not None and bot.proc.returncode == 0


async def test_a_refused_token_stops_the_bot_at_once_with_one_line(tmp_path: Path) -> None:
    async with FakeDiscord() as discord, FakeSunra(key=SUNRA_KEY) as sunra:
        bot = BotProcess(tmp_path, discord, sunra, DISCORD_TOKEN="MTIz.refused.token-0000", **FAST_RETRY)
        try:
            await bot.start()
        except AssertionError as error:
            assert "the bot exited with 1" in str(error)
        else:
            raise AssertionError("the bot came up with a refused token")
        finally:
            await bot.stop()
    log = bot.log_text()
    refusals = [line for line in log.splitlines() if "Discord rejected DISCORD_TOKEN" in line]
    assert len(refusals) == 1 and " CRITICAL " in refusals[0]
    assert attempt_lines(bot) == [] and "Traceback" not in log and "refused.token" not in log
    logins = [r for r in discord.requests if r.path == "/users/@me"]
    assert len(logins) == 1 and logins[0].status == 401


async def test_sunra_unreachable_at_start_does_not_stop_the_bot(tmp_path: Path) -> None:
    sunra_port = closed_port()
    sunra = FakeSunra(key=SUNRA_KEY, port=sunra_port)  # not started yet
    async with FakeDiscord() as discord:
        bot = BotProcess(tmp_path, discord, sunra, **FAST_RETRY)
        try:
            await bot.start()  # READY without sunra: nothing at start needs it
            async with sunra:
                crash = Crash(discord, sunra, bot)  # type: ignore[arg-type]
                discord.ensure_member(p.DEFAULT_GUILD_ID, p.DEFAULT_USER_ID)
                await crash.animate("the cat waves")
                [row] = await crash.wait_settled()
                assert row["state"] == "delivered"
        finally:
            await bot.stop()
    assert "Traceback" not in bot.log_text()


async def test_sigterm_while_waiting_for_discord_stops_at_once_and_cleanly(tmp_path: Path) -> None:
    discord = FakeDiscord(port=closed_port())  # never started
    async with FakeSunra(key=SUNRA_KEY) as sunra:
        bot = BotProcess(
            tmp_path,
            discord,
            sunra,
            STARTUP__RETRY_FIRST_SECONDS="30",
            HTTP__PORT=str(closed_port()),
        )
        starting = asyncio.create_task(bot.start())
        try:
            await until(lambda: len(attempt_lines(bot)) >= 1, "a first attempt", bot)
            loop = asyncio.get_running_loop()
            began = loop.time()
            await bot.stop()
            stopped_after = loop.time() - began
        finally:
            starting.cancel()
            await bot.stop()
    log = bot.log_text()
    assert bot.proc is not None and bot.proc.returncode == 0, bot.tail()
    assert stopped_after < 5, f"the bot took {stopped_after:.1f} s to stop in its 30 s pause"
    assert "Traceback" not in log and discord.token not in log and SUNRA_KEY not in log, bot.tail()


async def test_a_monitoring_port_in_use_stops_the_bot_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with FakeDiscord() as discord, FakeSunra(key=SUNRA_KEY) as sunra:
            bot = BotProcess(tmp_path, discord, sunra, HTTP__PORT=str(port))
            try:
                await bot.start()
            except AssertionError as error:
                assert "the bot exited with 1" in str(error)
            else:
                raise AssertionError("the bot came up without its listener")
            finally:
                await bot.stop()
    log = bot.log_text()
    lines = [line for line in log.splitlines() if "cannot listen on" in line]
    assert len(lines) == 1 and " CRITICAL " in lines[0] and f"127.0.0.1:{port}" in lines[0]
    assert "Traceback" not in log, bot.tail()
