"""Running things against the fake Discord: :func:`running_client` for a discord.py bot,
:class:`FakeDiscordProcess` for a fake in a child process, and the command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from tests.fakes import payloads as p
from tests.fakes.discord_server._control import ControlClient
from tests.fakes.discord_server._fake import FakeDiscord
from tests.fakes.serving import serve_until_signalled


@contextlib.asynccontextmanager
async def running_client(
    bot: Any,
    fake: FakeDiscord | FakeDiscordProcess,
    *,
    token: str | None = None,
    timeout: float = 10.0,  # noqa: ASYNC109
    guild_ready_timeout: float | None = 0.05,
) -> AsyncIterator[Any]:
    """Run ``bot`` (a ``discord.Client``/``commands.Bot``) against ``fake`` until the block ends.

    ``fake`` is a :class:`FakeDiscord` or a :class:`FakeDiscordProcess` (anything with ``api_url``,
    ``gateway_url`` and ``token``).

    Points ``Route.BASE`` and ``DiscordWebSocket.DEFAULT_GATEWAY`` at the fake, starts ``bot.start(token)``
    in a task, waits until discord.py is ready (raising the start error if login/connect fails), and on
    exit closes the bot and restores both globals. ``guild_ready_timeout`` shortens discord.py's wait for
    more GUILD_CREATEs after READY (2 s by default) so tests start fast; None leaves the bot's setting.
    """
    import discord.gateway
    import discord.http
    import yarl

    old_base = discord.http.Route.BASE
    old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = fake.api_url
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    if guild_ready_timeout is not None:
        bot._connection.guild_ready_timeout = guild_ready_timeout
    task = asyncio.create_task(bot.start(token or fake.token), name="running_client:bot.start")
    body_failed = False
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not bot.is_ready():
            if task.done():
                task.result()  # raises LoginFailure, PrivilegedIntentsRequired, ...
                raise RuntimeError("bot.start() returned before the bot was ready")
            if loop.time() > deadline:
                raise TimeoutError(f"the bot was not ready within {timeout}s")
            await asyncio.sleep(0.01)
        try:
            yield bot
        except BaseException:
            body_failed = True
            raise
    finally:
        try:
            await bot.close()
            if not task.done():
                await asyncio.wait_for(task, 5.0)
            elif not task.cancelled() and task.exception() is not None and not body_failed:
                task.result()
        finally:
            if not task.done():
                task.cancel()
            discord.http.Route.BASE = old_base
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway


PROJECT_ROOT = Path(__file__).resolve().parents[3]


class FakeDiscordProcess:
    """``python -m tests.fakes.discord_server`` as a child process (it outlives a SIGKILLed bot).

    ``async with FakeDiscordProcess() as proc:`` gives ``proc.url``, ``proc.gateway_url``, ``proc.token``,
    ``proc.info`` (the ready line) and ``proc.control`` (:class:`ControlClient`); the process is killed
    on exit.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        token: str = p.DEFAULT_TOKEN,
        extra_args: Iterable[str] = (),
        startup_timeout: float = 20.0,
        shard_count: int = 1,
    ) -> None:
        self.port = port
        self.token = token
        self.extra_args = list(extra_args)
        self.shard_count = shard_count
        self.startup_timeout = startup_timeout
        self.proc: asyncio.subprocess.Process | None = None
        self.info: dict[str, Any] = {}

    @property
    def url(self) -> str:
        return str(self.info["url"])

    @property
    def api_url(self) -> str:
        return str(self.info["api_url"])

    @property
    def gateway_url(self) -> str:
        return str(self.info["gateway_url"])

    @property
    def control(self) -> ControlClient:
        return ControlClient(self.url)

    async def start(self) -> FakeDiscordProcess:
        args = ["-m", "tests.fakes.discord_server", "--port", str(self.port), "--token", self.token]
        args += ["--shard-count", str(self.shard_count)]
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, *args, *self.extra_args, cwd=PROJECT_ROOT, stdout=asyncio.subprocess.PIPE
        )
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), self.startup_timeout)
        except TimeoutError:
            await self.stop()
            raise
        if not line:
            await self.stop()
            raise RuntimeError("fake Discord process exited before it was ready")
        self.info = json.loads(line)
        return self

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 5.0)

    async def __aenter__(self) -> FakeDiscordProcess:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeDiscord(
        args.token,
        host=args.host,
        port=args.port,
        allowed_intents=args.allowed_intents,
        callback_timeout=None if args.callback_timeout <= 0 else args.callback_timeout,
        token_lifetime=args.token_lifetime,
        shard_count=args.shard_count,
    )
    await fake.start()
    info = {
        "url": fake.url,
        "api_url": fake.api_url,
        "gateway_url": fake.gateway_url,
        "control_url": fake.control_url,
        "port": fake.port,
        "token": fake.token,
        "application_id": str(fake.application_id),
        "guild_id": str(fake.default_guild_id),
        "channel_id": str(fake.default_channel_id),
        "user_id": str(fake.default_user_id),
        "shard_count": fake.shard_count,
    }
    print(json.dumps(info), flush=True)
    await serve_until_signalled(fake.stop)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.discord_server",
        description="Fake Discord REST API + gateway on loopback, with a control API under /_control.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = a free port (see the ready line)")
    parser.add_argument("--token", default=p.DEFAULT_TOKEN)
    parser.add_argument(
        "--allowed-intents", type=int, default=0, help="privileged intents the app has enabled"
    )
    parser.add_argument("--callback-timeout", type=float, default=3.0, help="seconds; 0 = unlimited")
    parser.add_argument("--token-lifetime", type=float, default=15 * 60.0)
    parser.add_argument(
        "--shard-count", type=int, default=1, help="what GET /gateway/bot recommends; guilds' shards use it"
    )
    args = parser.parse_args(argv)
    asyncio.run(_serve(args))
