"""The optional monitoring listener (`HTTP__PORT`, off by default): `/healthz` for Docker and load
balancers, `/metrics` for Prometheus. It runs in the bot's event loop with aiohttp (discord.py's own
HTTP library), so it answers only while the loop is alive."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import discord
from aiohttp import web

from bot.config import HttpSettings
from bot.fleet import WHOLE, ShardPlan
from bot.metrics import CONTENT_TYPE, BotMetrics
from bot.store import Database, metrics as queries

log = logging.getLogger(__name__)

# /healthz asks the database a trivial question; an answer slower than this counts as down.
DATABASE_TIMEOUT_SECONDS = 3.0


def gateway_connected(client: discord.Client) -> bool:
    """Logged in, ready and holding an open gateway websocket, each of its shards' in a fleet (False
    while discord.py reconnects)."""
    if not client.is_ready() or client.is_closed():
        return False
    if isinstance(client, discord.AutoShardedClient):
        shards = client.shards.values()
        return bool(shards) and not any(shard.is_closed() for shard in shards)
    ws = client.ws
    return ws is not None and ws.open


class ListenerError(Exception):
    """The monitoring listener cannot listen (the port is taken, the address is not this host's)."""


class Monitor:
    def __init__(
        self,
        settings: HttpSettings,
        *,
        metrics: BotMetrics,
        db: Database,
        gateway_up: Callable[[], bool],
        database_timeout: float = DATABASE_TIMEOUT_SECONDS,
        shards: ShardPlan = WHOLE,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.db = db
        self._gateway_up = gateway_up
        self.shards = shards
        metrics.describe_process(shards)
        self._database_timeout = database_timeout
        self._runner: web.AppRunner | None = None

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Where it listens: (host, port) of each socket; empty when stopped."""
        if self._runner is None:
            return []
        return [(str(address[0]), int(address[1])) for address in self._runner.addresses]

    async def start(self) -> None:
        """Listens on HTTP__HOST:HTTP__PORT; raises ListenerError (after one clear log line) if it
        cannot."""
        await self.metrics.start(self.db)
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        host, port = self.settings.host, self.settings.port
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as error:
            await runner.cleanup()
            log.critical("cannot listen on %s:%d for /healthz and /metrics (%s)", host, port, error)
            raise ListenerError(str(error)) from error
        self._runner = runner
        log.info("monitoring on http://%s:%d (/healthz, /metrics)", host, port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def health(self) -> dict[str, str]:
        """{"status": "ok"|"down", "gateway": "up"|"down", "database": "up"|"down", "shards": "0,1"
        (this process's shards of a fleet; "all" when it is the whole bot)}."""
        gateway = self._gateway_up()
        database = await self._database_answers()
        return {
            "status": "ok" if gateway and database else "down",
            "gateway": "up" if gateway else "down",
            "database": "up" if database else "down",
            "shards": self.shards.label,
        }

    async def _database_answers(self) -> bool:
        try:
            async with asyncio.timeout(self._database_timeout):
                await queries.ping(self.db)
        except Exception as error:  # closed, locked, broken: all mean "down" here
            log.warning("health check: the database does not answer (%s)", type(error).__name__)
            return False
        return True

    async def _healthz(self, request: web.Request) -> web.Response:
        body = await self.health()
        return web.json_response(body, status=200 if body["status"] == "ok" else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        try:
            text = await self.metrics.render(self.db)
        except Exception:
            log.exception("reading the metrics from the database failed")
            return web.Response(status=503, text="the database does not answer\n")
        return web.Response(body=text, headers={"Content-Type": CONTENT_TYPE})
