"""The fake Discord's gateway: websocket sessions, IDENTIFY/RESUME, READY/GUILD_CREATE, dispatching events."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import secrets
import zlib
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakes.discord_server._base import FakeBase
from tests.fakes.discord_server._records import (
    INTENT_GUILD_MEMBERS,
    INTENT_GUILD_PRESENCES,
    INTENT_MESSAGE_CONTENT,
    PRIVILEGED_INTENTS,
    now,
)

THREADS = (10, 11, 12)  # announcement, public and private threads


class _GatewayConnection:
    def __init__(self, ws: web.WebSocketResponse, compress: str | None) -> None:
        self.ws = ws
        self.compress = compress
        self._zlib = zlib.compressobj() if compress == "zlib-stream" else None
        self.lock = asyncio.Lock()
        self.session: GatewaySession | None = None
        self.heartbeats = 0
        self.closed_by_server = False

    async def close(self, code: int, message: bytes) -> None:
        self.closed_by_server = True
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, message=message)

    async def send(self, frame: Mapping[str, Any]) -> None:
        text = json.dumps(frame, separators=(",", ":"))
        async with self.lock:
            if self.ws.closed:
                return
            try:
                if self._zlib is not None:
                    # discord.py buffers binary frames until one ends with Z_SYNC_FLUSH's 00 00 ff ff.
                    data = self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
                    await self.ws.send_bytes(data)
                else:
                    await self.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                pass


@dataclasses.dataclass
class GatewaySession:
    session_id: str
    intents: int
    identified_at: float
    seq: int = 0
    conn: _GatewayConnection | None = None
    buffer: collections.deque[dict[str, Any]] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=2000)
    )
    invalidated: bool = False
    ready: bool = False
    shard: tuple[int, int] | None = None  # (shard_id, shard_count) from IDENTIFY; None = unsharded

    @property
    def connected(self) -> bool:
        return self.conn is not None and not self.conn.ws.closed and not self.invalidated

    @property
    def shard_id(self) -> int | None:
        return None if self.shard is None else self.shard[0]

    def serves(self, guild_id: int | None) -> bool:
        """Whether Discord sends this session the events of ``guild_id`` (None: DMs, go to shard 0)."""
        if self.shard is None:
            return True
        shard_id, count = self.shard
        return shard_for(guild_id, count) == shard_id

    def to_json(self, started: float) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "intents": self.intents,
            "seq": self.seq,
            "connected": self.connected,
            "ready": self.ready,
            "invalidated": self.invalidated,
            "identified_at": self.identified_at - started,
            "shard": list(self.shard) if self.shard is not None else None,
        }


def shard_for(guild_id: int | None, shard_count: int) -> int:
    """Discord's shard of a guild, ``(guild_id >> 22) % shard_count``; DMs (None) belong to shard 0.

    Source: https://discord.com/developers/docs/events/gateway#sharding
    """
    return 0 if guild_id is None else (guild_id >> 22) % max(shard_count, 1)


def event_guild_id(event: str, data: Mapping[str, Any]) -> int | None:
    """The guild an event belongs to (its ``guild_id``, or ``id`` for the GUILD_* events themselves)."""
    raw = data.get("id") if event in ("GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE") else None
    raw = data.get("guild_id") or raw
    return int(raw) if raw is not None else None


def _trace() -> list[str]:
    return ['["gateway-prd-us-east1-c-fake",{"micros":0.0}]']


class GatewayMixin(FakeBase):
    """The gateway of :class:`FakeDiscord`: sessions and dispatched events."""

    async def dispatch(self, event: str, data: Mapping[str, Any]) -> int:
        """Send any dispatch event to every ready session of its guild's shard (buffered for disconnected,
        resumable ones); returns how many connected sessions got it."""
        guild_id = event_guild_id(event, data)
        count = 0
        for session in list(self.sessions.values()):
            if session.ready and not session.invalidated and session.serves(guild_id):
                await self._send_dispatch(session, event, dict(data))
                count += session.connected
        return count

    def _announce(self, intent: int, event: str, data: Mapping[str, Any]) -> None:
        guild_id = event_guild_id(event, data)
        targets = [
            s
            for s in self.sessions.values()
            if s.ready and not s.invalidated and s.intents & intent and s.serves(guild_id)
        ]
        for session in targets:
            self._spawn(self._send_dispatch(session, event, dict(data)))

    def _announce_guild(self, guild_id: int) -> None:
        sessions = [s for s in self.sessions.values() if s.ready and not s.invalidated and s.serves(guild_id)]
        for session in sessions:
            self._spawn(self._send_dispatch(session, "GUILD_CREATE", self._guild_create(guild_id, session)))

    async def drop_connections(self, code: int = 4000, *, abrupt: bool = False) -> None:
        """Close every gateway websocket (discord.py reconnects and RESUMEs unless the code forbids)."""
        for conn in list(self._connections):
            conn.closed_by_server = True
            if abrupt:
                transport = conn.ws._req.transport if conn.ws._req is not None else None
                if transport is not None:
                    transport.abort()
            else:
                await conn.close(code, b"fake Discord dropped the connection")

    async def request_reconnect(self) -> None:
        """Send op 7 RECONNECT to every connection (discord.py closes and RESUMEs)."""
        for conn in list(self._connections):
            await conn.send({"op": 7, "d": None, "s": None, "t": None})

    async def invalidate_sessions(self, resumable: bool = False) -> None:
        """Send op 9 INVALID_SESSION; with ``resumable=False`` discord.py re-IDENTIFYs."""
        for conn in list(self._connections):
            if conn.session is not None and not resumable:
                conn.session.invalidated = True
            await conn.send({"op": 9, "d": resumable, "s": None, "t": None})

    @property
    def connected_sessions(self) -> list[GatewaySession]:
        return [s for s in self.sessions.values() if s.connected and s.ready]

    def shard_of(self, guild_id: int | None) -> int:
        """The shard of ``guild_id`` under the fake's ``shard_count`` (DMs: 0)."""
        return shard_for(guild_id, self.shard_count)

    def sessions_of_shard(self, shard_id: int) -> list[GatewaySession]:
        """Every session that identified as ``shard_id`` (oldest first), connected or not."""
        return [s for s in self.sessions.values() if s.shard_id == shard_id]

    async def _send_dispatch(self, session: GatewaySession, event: str, data: dict[str, Any]) -> None:
        session.seq += 1
        frame = {"op": 0, "t": event, "s": session.seq, "d": data}
        session.buffer.append(frame)
        conn = session.conn
        if conn is not None and not session.invalidated:
            await conn.send(frame)

    def _guild_create(self, guild_id: int, session: GatewaySession) -> dict[str, Any]:
        guild = self.guilds[guild_id]
        if session.intents & INTENT_GUILD_MEMBERS:
            members = list(guild.members.values())
        else:  # without the members intent Discord only sends the bot's own member
            members = [m for uid, m in guild.members.items() if uid == self.bot_user_id]
        data = dict(guild.data)
        data.update(
            joined_at=guild.joined_at,
            large=len(guild.members) > 250,
            unavailable=False,
            member_count=len(guild.members),
            voice_states=[],
            members=members,
            # Discord sends a guild's active threads apart from its channels (a forum's posts among them).
            channels=[self.channels[c] for c in guild.channel_ids if self.channels[c]["type"] not in THREADS],
            threads=[self.channels[c] for c in guild.channel_ids if self.channels[c]["type"] in THREADS],
            presences=[],
            stage_instances=[],
            guild_scheduled_events=[],
            soundboard_sounds=[],
            embedded_activities=[],
            activity_instances=[],
            lazy=True,
        )
        return data

    async def _gateway_handler(self, request: web.Request) -> web.StreamResponse:
        if not self.gateway_open:
            return web.Response(status=503, text="gateway unavailable")
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        encoding = request.query.get("encoding", "json")
        self.gateway_connections.append(dict(request.query))
        conn = _GatewayConnection(ws, request.query.get("compress"))
        self._connections.add(conn)
        try:
            if encoding != "json":
                await conn.close(4002, b"Error while decoding payload.")
                return ws
            await conn.send(
                {
                    "op": 10,
                    "d": {"heartbeat_interval": self.heartbeat_interval, "_trace": _trace()},
                    "s": None,
                    "t": None,
                }
            )
            async for msg in ws:
                if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    break
                try:
                    frame = json.loads(msg.data)
                    op = frame["op"]
                except (ValueError, KeyError, TypeError):
                    await conn.close(4002, b"Error while decoding payload.")
                    break
                await self._gateway_op(conn, op, frame.get("d"))
                if ws.closed:
                    break
        finally:
            self._connections.discard(conn)
            session = conn.session
            if session is not None and session.conn is conn:
                session.conn = None
                # A client closing with 1000/1001 ends its session; other codes leave it resumable.
                if ws.close_code in (1000, 1001) and not conn.closed_by_server:
                    session.invalidated = True
            self._notify()
        return ws

    async def _gateway_op(self, conn: _GatewayConnection, op: int, d: Any) -> None:
        if op == 1:  # heartbeat
            conn.heartbeats += 1
            await conn.send({"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:
            await self._identify(conn, d or {})
        elif op == 6:
            await self._resume(conn, d or {})
        elif op == 8:
            self.gateway_events.append(("REQUEST_GUILD_MEMBERS", d or {}))
            await self._request_members(conn, d or {})
        elif op in (3, 4):
            self.gateway_events.append(("PRESENCE_UPDATE" if op == 3 else "VOICE_STATE_UPDATE", d or {}))
        else:
            await conn.close(4001, b"Unknown opcode.")
        self._notify()

    def _token_ok(self, token: Any) -> bool:
        return isinstance(token, str) and token.removeprefix("Bot ") == self.token

    async def _identify(self, conn: _GatewayConnection, d: Mapping[str, Any]) -> None:
        self.gateway_events.append(("IDENTIFY", {k: v for k, v in d.items() if k != "token"}))
        if conn.session is not None:
            await conn.close(4005, b"Already authenticated.")
            return
        if not self._token_ok(d.get("token")):
            await conn.close(4004, b"Authentication failed.")
            return
        intents = d.get("intents")
        if not isinstance(intents, int):
            await conn.close(4013, b"Invalid intent(s).")
            return
        if intents & PRIVILEGED_INTENTS & ~self.allowed_intents:
            await conn.close(4014, b"Disallowed intent(s).")
            return
        shard = d.get("shard")
        if shard is not None:
            valid = (
                isinstance(shard, list)
                and len(shard) == 2
                and all(isinstance(n, int) and not isinstance(n, bool) for n in shard)
                and 0 <= shard[0] < shard[1]
            )
            if not valid:
                await conn.close(4010, b"Invalid shard.")
                return
        session = GatewaySession(session_id=secrets.token_hex(16), intents=intents, identified_at=now())
        session.shard = (shard[0], shard[1]) if shard is not None else None
        session.conn = conn
        conn.session = session
        self.sessions[session.session_id] = session
        self.identify_count += 1
        ready = {
            "v": 10,
            "user_settings": {},
            "user": {
                **self.bot_user,
                "verified": True,
                "mfa_enabled": False,
                "email": None,
                "bot": True,
                "flags": 0,
            },
            "guilds": [{"id": str(gid), "unavailable": True} for gid in self.guilds if session.serves(gid)],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(self.application_id), "flags": self._application_flags()},
            "private_channels": [],
            "presences": [],
            "relationships": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["us-east", "us-central", "atlanta", "us-south", "us-west"],
            "auth": {},
            "_trace": _trace(),
        }
        if "shard" in d:
            ready["shard"] = d["shard"]
        await self._send_dispatch(session, "READY", ready)
        for gid, guild in self.guilds.items():
            if not guild.unavailable and session.serves(gid):
                await self._send_dispatch(session, "GUILD_CREATE", self._guild_create(gid, session))
        session.ready = True

    async def _resume(self, conn: _GatewayConnection, d: Mapping[str, Any]) -> None:
        self.gateway_events.append(("RESUME", {k: v for k, v in d.items() if k != "token"}))
        if not self._token_ok(d.get("token")):
            await conn.close(4004, b"Authentication failed.")
            return
        session = self.sessions.get(str(d.get("session_id")))
        seq = d.get("seq") or 0
        oldest = session.buffer[0]["s"] if session is not None and session.buffer else 1
        if session is None or session.invalidated or not self.allow_resume or seq < oldest - 1:
            await conn.send({"op": 9, "d": False, "s": None, "t": None})
            return
        old = session.conn
        session.conn = conn
        conn.session = session
        if old is not None and old is not conn:
            await old.close(4000, b"Session resumed elsewhere")
        for frame in [f for f in session.buffer if f["s"] > seq]:
            await conn.send(frame)
        self.resume_count += 1
        await self._send_dispatch(session, "RESUMED", {"_trace": _trace()})
        session.ready = True

    async def _request_members(self, conn: _GatewayConnection, d: Mapping[str, Any]) -> None:
        session = conn.session
        if session is None:
            await conn.close(4003, b"Not authenticated.")
            return
        gid = int(d.get("guild_id", 0))
        guild = self.guilds.get(gid)
        members = list(guild.members.values()) if guild else []
        user_ids = d.get("user_ids")
        if user_ids is not None:
            wanted = {int(u) for u in (user_ids if isinstance(user_ids, list) else [user_ids])}
            members = [m for m in members if int(m["user"]["id"]) in wanted]
        elif d.get("query"):
            query = str(d["query"]).lower()
            members = [m for m in members if str(m["user"]["username"]).lower().startswith(query)]
        limit = int(d.get("limit") or 0)
        if limit:
            members = members[:limit]
        chunk: dict[str, Any] = {
            "guild_id": str(gid),
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if d.get("nonce") is not None:
            chunk["nonce"] = d["nonce"]
        if d.get("presences"):
            chunk["presences"] = []
        await self._send_dispatch(session, "GUILD_MEMBERS_CHUNK", chunk)

    def _application_flags(self) -> int:
        flags = 1 << 23  # APPLICATION_COMMAND_BADGE
        if self.allowed_intents & INTENT_GUILD_PRESENCES:
            flags |= 1 << 13
        if self.allowed_intents & INTENT_GUILD_MEMBERS:
            flags |= 1 << 15
        if self.allowed_intents & INTENT_MESSAGE_CONTENT:
            flags |= 1 << 19
        return flags
