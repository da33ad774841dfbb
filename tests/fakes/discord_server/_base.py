"""The fake Discord's attributes (world, records, behaviour switches), start/stop and the awaitables."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Self

from aiohttp import web

from tests.fakes import payloads as p
from tests.fakes.discord_server._records import (
    API_PREFIX,
    GATEWAY_PATH,
    CallbackRecord,
    CommandPut,
    EditRecord,
    FollowupRecord,
    InjectedDisconnect,
    InjectedError,
    InteractionRecord,
    MessageRecord,
    RateLimitRule,
    RecordedRequest,
    _Guild,
    _StoredAttachment,
    _Window,
    now,
)

if TYPE_CHECKING:
    from tests.fakes.discord_server._gateway import GatewaySession, _GatewayConnection


# Connections the fake's listening socket queues before accepting them (aiohttp's default: 128).
CONNECTION_BACKLOG = 2048


class FakeBase:
    """Attributes and lifecycle shared by every part of :class:`FakeDiscord` (see its docstring)."""

    def __init__(
        self,
        token: str = p.DEFAULT_TOKEN,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        application_id: int = p.DEFAULT_APPLICATION_ID,
        bot_name: str = "Kling Bot",
        with_defaults: bool = True,
        allowed_intents: int = 0,
        heartbeat_interval: int = 41_250,
        callback_timeout: float | None = 3.0,
        token_lifetime: float = 15 * 60,
        shard_count: int = 1,
    ) -> None:
        self.token = token
        self.host = host
        self.port = port
        self.application_id = application_id
        self.bot_user_id = application_id
        self.allowed_intents = allowed_intents
        self.heartbeat_interval = heartbeat_interval
        self.callback_timeout = callback_timeout
        self.token_lifetime = token_lifetime
        # What GET /gateway/bot recommends, and the count records use for a guild's shard.
        self.shard_count = shard_count
        self.allow_resume = True
        # False: the gateway refuses new websockets (503 before the upgrade), like an outage or a proxy
        # that is down; with drop_connections() the bot stays disconnected until it is True again.
        self.gateway_open = True
        self.dispatch_message_events = True
        self.enforce_permissions = True
        self.started_at = now()

        # model
        self.users: dict[int, dict[str, Any]] = {}
        self.guilds: dict[int, _Guild] = {}
        self.left_guilds: list[int] = []  # guilds the bot left (DELETE /users/@me/guilds/{id}), in order
        self.attachment_downloads = 0  # GETs of attachment files (the bot downloading a picture)
        self.channels: dict[int, dict[str, Any]] = {}
        self._dm_by_user: dict[int, int] = {}
        self._commands: dict[int | None, list[dict[str, Any]]] = {}
        self._attachments: dict[int, _StoredAttachment] = {}

        # records
        self.requests: list[RecordedRequest] = []
        self.unhandled: list[RecordedRequest] = []
        self.interactions: dict[int, InteractionRecord] = {}
        self._interactions_by_token: dict[str, InteractionRecord] = {}
        self.callbacks: list[CallbackRecord] = []
        self.followups: list[FollowupRecord] = []
        self.messages: list[MessageRecord] = []
        self._messages_by_id: dict[int, MessageRecord] = {}
        self.edits: list[EditRecord] = []
        self.deletions: list[tuple[int, int, float]] = []  # (message_id, channel_id, at)
        self.command_puts: list[CommandPut] = []
        # Server Settings → Integrations: guild id → GuildApplicationCommandPermissions objects.
        self.command_permissions: dict[int, list[dict[str, Any]]] = {}
        self.invalid_requests = 0
        self.gateway_events: list[tuple[str, dict[str, Any]]] = []  # (op/name, data) received from clients
        self.gateway_connections: list[dict[str, str]] = []  # query of each websocket (v, encoding, compress)
        self.identify_count = 0
        self.resume_count = 0

        # behaviour
        self._refusals: dict[int, tuple[int, int | None, str | None]] = {}
        self._refused_dm: set[int] = set()
        self._expired_tokens: set[str] = set()
        self._injected: list[InjectedError] = []
        self._disconnects: list[InjectedDisconnect] = []
        self.rate_limits: dict[str, RateLimitRule] = {
            "message_create": RateLimitRule(5, 5.0),
            "message_edit": RateLimitRule(5, 5.0),
            "message_delete": RateLimitRule(5, 1.0),
            "webhook": RateLimitRule(5, 2.0),
            # Interaction callbacks are limited per interaction, not by the bot's global limit.
            "callback": RateLimitRule(5, 1.0),
            "default": RateLimitRule(50, 1.0),
        }
        self._windows: dict[tuple[str, str], _Window] = {}

        # gateway
        self.sessions: dict[str, GatewaySession] = {}
        self._connections: set[_GatewayConnection] = set()

        self._waiters: list[asyncio.Future[None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

        self.bot_user = p.user_payload(self.bot_user_id, bot_name, bot=True)
        self.users[self.bot_user_id] = self.bot_user
        self.default_guild_id: int | None = None
        self.default_channel_id: int | None = None
        self.default_user_id: int | None = None
        if with_defaults:
            self.add_user("owner", user_id=p.DEFAULT_OWNER_ID, global_name="Server Owner")
            self.add_user("alice", user_id=p.DEFAULT_USER_ID, global_name="Alice")
            self.add_guild(
                "Kling Test Server",
                guild_id=p.DEFAULT_GUILD_ID,
                owner_id=p.DEFAULT_OWNER_ID,
                bot_role_id=p.DEFAULT_BOT_ROLE_ID,
                channel_id=p.DEFAULT_CHANNEL_ID,
            )
            self.add_member(p.DEFAULT_GUILD_ID, p.DEFAULT_USER_ID)
            self.default_guild_id = p.DEFAULT_GUILD_ID
            self.default_channel_id = p.DEFAULT_CHANNEL_ID
            self.default_user_id = p.DEFAULT_USER_ID

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}{GATEWAY_PATH}"

    @property
    def control_url(self) -> str:
        return f"{self.url}/_control"

    async def start(self) -> Self:
        app = web.Application(client_max_size=200 * 1024 * 1024)
        self._setup_routes(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        # A crowd's clients open hundreds of connections at once (one per interaction callback): with
        # aiohttp's default backlog of 128 the kernel drops the rest of their SYNs, each retried after
        # Linux's 1 s initial retransmission timeout, which real Discord never imposes. The kernel caps
        # the figure at net.core.somaxconn.
        self._site = web.TCPSite(self._runner, self.host, self.port, backlog=CONNECTION_BACKLOG)
        await self._site.start()
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])
        self.started_at = now()
        return self

    async def stop(self) -> None:
        for conn in list(self._connections):
            with contextlib.suppress(Exception):
                await conn.close(1001, b"fake Discord stopping")
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _elapsed(self) -> float:
        return now() - self.started_at

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            coro.close()
            return
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait_for(
        self,
        predicate: Callable[[], Any],
        timeout: float = 5.0,  # noqa: ASYNC109
        what: str = "condition",
    ) -> Any:
        """Wait until ``predicate()`` is truthy (checked after every request/event and every 20 ms).

        Returns the predicate's value; raises TimeoutError naming ``what``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"fake Discord: timed out after {timeout}s waiting for {what}")
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            # Woken by every request/gateway event; also polls, for predicates on the bot's own state.
            await asyncio.wait({fut}, timeout=min(remaining, 0.02))

    async def wait_for_ready(
        self,
        timeout: float = 10.0,  # noqa: ASYNC109
        *,
        shard_id: int | None = None,
    ) -> GatewaySession:
        """Wait until a gateway session got READY and its GUILD_CREATEs (fake side, not discord.py's);
        with ``shard_id``, a session that identified as that shard."""

        def ready() -> GatewaySession | None:
            return next(
                (
                    s
                    for s in self.sessions.values()
                    if s.ready and s.connected and (shard_id is None or s.shard_id == shard_id)
                ),
                None,
            )

        what = "a READY gateway session" + (f" of shard {shard_id}" if shard_id is not None else "")
        session: GatewaySession = await self.wait_for(ready, timeout, what)
        return session

    async def wait_for_callback(
        self,
        interaction_id: int | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> CallbackRecord:
        """The callback for ``interaction_id`` (default: the first callback recorded)."""

        def found() -> CallbackRecord | None:
            return next(
                (c for c in self.callbacks if interaction_id is None or c.interaction_id == interaction_id),
                None,
            )

        record: CallbackRecord = await self.wait_for(found, timeout, f"callback of {interaction_id}")
        return record

    async def wait_for_followup(
        self,
        interaction_id: int | None = None,
        *,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> FollowupRecord:
        """The ``count``-th followup for ``interaction_id`` (default: of any interaction)."""

        def found() -> FollowupRecord | None:
            matching = [
                f for f in self.followups if interaction_id is None or f.interaction_id == interaction_id
            ]
            return matching[count - 1] if len(matching) >= count else None

        record: FollowupRecord = await self.wait_for(found, timeout, f"followup #{count} of {interaction_id}")
        return record

    async def wait_for_message(
        self,
        predicate: Callable[[MessageRecord], bool] | None = None,
        *,
        channel_id: int | None = None,
        kind: str | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> MessageRecord:
        """The first message record matching ``channel_id``/``kind``/``predicate``."""

        def found() -> MessageRecord | None:
            for rec in self.messages:
                if channel_id is not None and rec.channel_id != channel_id:
                    continue
                if kind is not None and rec.kind != kind:
                    continue
                if predicate is not None and not predicate(rec):
                    continue
                return rec
            return None

        record: MessageRecord = await self.wait_for(found, timeout, f"a message ({kind or 'any'} kind)")
        return record
