"""A fake Discord (REST API + gateway) on 127.0.0.1 for an unmodified discord.py 2.7 bot.

Real HTTP and a real websocket: discord.py logs in, connects, receives INTERACTION_CREATE events and
calls the REST API exactly as it would on discord.com; every call is recorded.

In-process use (pytest)::

    from tests.fakes.discord_server import FakeDiscord, running_client
    from tests.fakes import payloads as p

    async with FakeDiscord() as fake:                      # default world, see below
        async with running_client(MyBot(), fake) as bot:   # points discord.py at the fake, waits for ready
            inter = await fake.dispatch_interaction(p.slash_command(fake, name="ping"))
            cb = await fake.wait_for_callback(inter.id)    # CallbackRecord: .type, .flags, .latency, ...
            msg = await fake.wait_for_message(lambda m: m.kind == "channel")
            assert msg.files[0].data == b"..." and msg.message["content"] == "..."

The default world (ids are the constants in :mod:`tests.fakes.payloads`): application/bot user
``DEFAULT_APPLICATION_ID`` ("Kling Bot"), guild ``DEFAULT_GUILD_ID`` with @everyone (the permissions a
new server gives it), a managed bot role (``DEFAULT_BOT_PERMISSIONS`` = 117760), one text channel
``DEFAULT_CHANNEL_ID`` "#general", the owner, and member "alice" (``DEFAULT_USER_ID``, the default
invoker of interactions). Token: ``fake.token`` (``payloads.DEFAULT_TOKEN`` unless given).

Pointing discord.py at the fake (``running_client`` does this; the bot under test does it from config)::

    discord.http.Route.BASE = f"{fake.url}/api/v10"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)

What is recorded (lists, oldest first; ``at``/``latency`` are seconds):

* ``fake.callbacks``: :class:`CallbackRecord` per accepted interaction callback (``type`` 4/5/6/7/8/9,
  ``flags``, ``data``, ``files``, ``latency`` since :meth:`FakeDiscord.dispatch_interaction`).
* ``fake.followups``: :class:`FollowupRecord` per accepted ``POST /webhooks/{app}/{token}``.
* ``fake.messages``: :class:`MessageRecord` per message that exists(ed): ``kind`` "channel" (bot's
  ``POST /channels/{id}/messages``), "interaction_response" (type 4/5 callback), "followup", "user"
  (:meth:`FakeDiscord.add_message`), "external" (a message only seen in a component interaction, first
  stored when a type-7 callback edits it). ``.message`` is the live Discord message object (updated by
  edits), ``.files`` the uploaded :class:`RecordedFile` (bytes), ``.edits`` its :class:`EditRecord` history.
* ``fake.edits``, ``fake.deletions``, ``fake.command_puts``, ``fake.requests`` (every REST call with
  status), ``fake.unhandled`` (calls to routes the fake does not know: 404), ``fake.invalid_requests``
  (number of 401/403/429 answers — Discord bans an IP at 10,000 per 10 minutes).
* Awaitables: ``wait_for_ready()``, ``wait_for_callback()``, ``wait_for_followup()``,
  ``wait_for_message()``, ``wait_for(predicate)``.

Behaviour switches (all also reachable through the control API):

* ``fake.refuse(channel_id, 50013)`` (403 Missing Permissions), ``10003`` (404 Unknown Channel), any
  code; applies to every ``/channels/{id}...`` call. ``fake.refuse_dm(user_id)``: 403 50007 on DM posts.
* ``fake.set_upload_limit(guild_id, n)``: bigger files get 413 code 40005 (default 10 MiB).
* Permissions are enforced on channel posts from the fake's roles and overwrites
  (``fake.set_overwrite``): no View Channel → 50001, no Send Messages / Attach Files → 50013, reply without
  Read Message History → 160002; embeds are dropped without Embed Links.
* Interaction tokens: callbacks after ``fake.callback_timeout`` (3 s, like Discord) or to an expired
  interaction → 404 10062; a second callback → 400 40060; webhook calls with a token older than
  ``fake.token_lifetime`` (15 min) or ``fake.expire_token(token)`` → 401 50027; followups before the
  callback → 404 10015.
* Rate limits: truthful ``X-RateLimit-*`` headers per bucket; exceeding a bucket → 429 with
  ``retry_after``, ``X-RateLimit-Scope: user`` and ``Via`` (discord.py treats a 429 without ``Via`` as a
  Cloudflare ban). Defaults: message create 5/5 s per channel, message edit 5/5 s per channel, delete
  5/1 s, webhook 5/2 s per token, interaction callback 5/1 s per interaction, other routes 50/1 s.
  Change with ``fake.set_rate_limit(name, ...)``.
* ``fake.inject_error(path_contains, status=500, ...)``: fail the next matching request(s).
* Gateway: ``drop_connections()``, ``request_reconnect()`` (op 7), ``invalidate_sessions()`` (op 9);
  RESUME replays missed events then sends RESUMED; ``fake.allow_resume = False`` answers op 9 instead.

Subprocess mode (for ``python -m bot`` crash tests)::

    python -m tests.fakes.discord_server --port 8765     # prints one JSON line {"url": ..., ...}, serves

or ``async with FakeDiscordProcess() as proc: await proc.control.dispatch_interaction(payload)``.
Control API (JSON, no auth, under ``{url}/_control``): ``GET /state`` (``?bytes=1`` adds file bytes as
base64), ``GET /wait?timeout=5&callbacks=1&messages=2&identifies=1...``, ``POST /interactions``
(a payload, or ``{"payload": ..., "wait_for_session": s}``, or ``{"factory": "slash_command",
"kwargs": {...}}``), ``POST /attachments``, ``POST /config``, ``POST /model``, ``POST /gateway``,
``POST /dispatch``, ``POST /reset``. See :class:`ControlClient` for the exact bodies. The default
world has fixed ids, so ``payloads.slash_command(state)`` (``state`` = ``GET /state``) or even
``payloads.slash_command(command_guild_id=...)`` builds payloads for a fake in another process.

discord.py 2.7.1 facts the fake is built around (and that tests must respect):

* ``Client.connect`` never calls ``GET /gateway/bot`` (only ``AutoShardedClient`` does; the fake answers
  it anyway): it connects to ``DEFAULT_GATEWAY.with_query(v=10, encoding="json",
  compress="zlib-stream")`` — ``with_query`` replaces any query, so the gateway URL must not rely on one.
  After READY it reconnects to ``resume_gateway_url``; after INVALID_SESSION to ``DEFAULT_GATEWAY`` again.
* Compression: ``zlib-stream`` (``zstd-stream`` if ``zstandard`` is installed). The fake sends zlib frames
  as binary messages ending in the Z_SYNC_FLUSH suffix ``00 00 ff ff``; for zstd it sends plain text
  frames, which discord.py also accepts (only binary frames are decompressed).
* REST JSON is parsed only if ``Content-Type`` is exactly ``application/json`` (no charset), and a 429
  without a ``Via`` header raises instead of waiting.
* Interaction callbacks are sent with ``?with_response=1``; the fake answers 200 with
  ``{"interaction": ..., "resource": ...}`` (204 without it). ``Interaction`` needs
  ``attachment_size_limit`` in the payload. A guild-registered command is only found if the payload has
  ``data.guild_id``; ``DynamicItem`` matching needs ``message.components`` holding the clicked custom id.
* After READY, discord.py waits ``guild_ready_timeout`` (2 s) for more GUILD_CREATEs before
  ``on_ready``; ``running_client`` lowers it to 0.05 s. Before every non-initial IDENTIFY (after
  op 9 INVALID_SESSION) it sleeps 5 s in ``Client.before_identify_hook`` (override it in a test bot).
* ``channel.send`` always sends a random ``nonce`` with ``enforce_nonce: true``; the fake returns the
  first message for a repeated nonce in the same channel within 2 minutes, like Discord.
* discord.py honours ``X-RateLimit-Remaining: 0`` by sleeping ``Reset-After``, so with the default
  buckets a test posting a 6th message in a channel within 5 s waits; loosen with ``set_rate_limit``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import dataclasses
import hashlib
import io
import json
import math
import mimetypes
import re
import secrets
import signal
import sys
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakes import payloads as p

API_PREFIX = "/api/v10"
GATEWAY_PATH = "/gateway"

# Gateway intents the fake looks at.
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT

# Message flags.
FLAG_SUPPRESS_EMBEDS = 1 << 2
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12
FLAG_IS_COMPONENTS_V2 = 1 << 15

#: Discord's JSON error codes the fake uses: code -> (HTTP status, message).
ERRORS: dict[int, tuple[int, str]] = {
    0: (401, "401: Unauthorized"),
    10003: (404, "Unknown Channel"),
    10004: (404, "Unknown Guild"),
    10007: (404, "Unknown Member"),
    10008: (404, "Unknown Message"),
    10013: (404, "Unknown User"),
    10015: (404, "Unknown Webhook"),
    10062: (404, "Unknown interaction"),
    10063: (404, "Unknown application command"),
    20016: (429, "This action cannot be performed due to slowmode rate limit."),
    30046: (400, "Maximum number of edits to messages older than 1 hour reached. Try again later."),
    40005: (413, "Request entity too large"),
    40067: (400, "A tag is required to create a forum post in this channel"),
    40060: (400, "Interaction has already been acknowledged"),
    50001: (403, "Missing Access"),
    50005: (403, "Cannot edit a message authored by another user"),
    50006: (400, "Cannot send an empty message"),
    50007: (403, "Cannot send messages to this user"),
    50008: (400, "Cannot send messages in a non-text channel"),
    50013: (403, "Missing Permissions"),
    50027: (401, "Invalid Webhook Token"),
    50035: (400, "Invalid Form Body"),
    50109: (400, "The request body contains invalid JSON."),
    160002: (403, "Cannot reply without permission to read message history"),
}


_Handler = Callable[[web.Request, "RecordedRequest"], Awaitable[web.StreamResponse]]


def now() -> float:
    return time.monotonic()


class DiscordError(Exception):
    """An error answer: ``{"code": code, "message": message[, "errors": errors]}`` with ``status``."""

    def __init__(
        self,
        code: int,
        message: str | None = None,
        *,
        status: int | None = None,
        errors: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        default_status, default_message = ERRORS.get(code, (400, "Bad Request"))
        self.code = code
        self.status = status or default_status
        self.message = message or default_message
        self.errors = errors
        self.headers = dict(headers or {})
        super().__init__(f"{self.status} {self.code} {self.message}")

    def body(self) -> dict[str, Any]:
        data: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            data["errors"] = self.errors
        return data


def form_error(field: str, code: str, message: str) -> DiscordError:
    """A 400 50035 Invalid Form Body naming one field, like Discord's validation errors."""
    errors: dict[str, Any] = {}
    node = errors
    parts = field.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = {"_errors": [{"code": code, "message": message}]}
    return DiscordError(50035, errors=errors)


# ------------------------------------------------------------------------------------------- records


@dataclasses.dataclass
class RecordedFile:
    """A file part of a multipart request (``files[n]``)."""

    field: str
    filename: str
    content_type: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def to_json(self, include_bytes: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "field": self.field,
            "filename": self.filename,
            "content_type": self.content_type,
            "size": self.size,
            "sha256": hashlib.sha256(self.data).hexdigest(),
        }
        if include_bytes:
            out["data_b64"] = base64.b64encode(self.data).decode()
        return out


@dataclasses.dataclass
class RecordedRequest:
    method: str
    path: str  # without the /api/v10 prefix
    query: dict[str, str]
    at: float
    status: int = 0
    body: Any = None
    files: list[RecordedFile] = dataclasses.field(default_factory=list)
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    error_code: int | None = None

    def to_json(self, include_bytes: bool = False) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "at": self.at,
            "status": self.status,
            "error_code": self.error_code,
            "body": self.body,
            "files": [f.to_json(include_bytes) for f in self.files],
        }


@dataclasses.dataclass
class InteractionRecord:
    """An interaction dispatched by the fake, and what happened to it."""

    id: int
    token: str
    type: int
    payload: dict[str, Any]
    dispatched_at: float  # monotonic
    delivered_to: list[str] = dataclasses.field(default_factory=list)  # session ids
    acknowledged: bool = False
    ack_type: int | None = None
    original_message_id: int | None = None
    message_ids: list[int] = dataclasses.field(default_factory=list)  # original + followups
    expired: bool = False

    @property
    def channel_id(self) -> int | None:
        cid = self.payload.get("channel_id") or (self.payload.get("channel") or {}).get("id")
        return int(cid) if cid is not None else None

    @property
    def attachment_size_limit(self) -> int:
        return int(self.payload.get("attachment_size_limit", p.DEFAULT_UPLOAD_LIMIT))

    def to_json(self, started: float) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "token": self.token,
            "type": self.type,
            "dispatched_at": self.dispatched_at - started,
            "delivered_to": self.delivered_to,
            "acknowledged": self.acknowledged,
            "ack_type": self.ack_type,
            "original_message_id": str(self.original_message_id) if self.original_message_id else None,
            "message_ids": [str(m) for m in self.message_ids],
            "custom_id": (self.payload.get("data") or {}).get("custom_id"),
            "name": (self.payload.get("data") or {}).get("name"),
        }


@dataclasses.dataclass
class CallbackRecord:
    """An accepted ``POST /interactions/{id}/{token}/callback``."""

    interaction_id: int
    token: str
    type: int
    data: dict[str, Any]
    files: list[RecordedFile]
    at: float
    latency: float  # seconds between dispatch_interaction and this callback
    message_id: int | None = None

    @property
    def flags(self) -> int:
        return int(self.data.get("flags") or 0)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)

    def to_json(self, include_bytes: bool = False) -> dict[str, Any]:
        return {
            "interaction_id": str(self.interaction_id),
            "token": self.token,
            "type": self.type,
            "flags": self.flags,
            "data": self.data,
            "files": [f.to_json(include_bytes) for f in self.files],
            "at": self.at,
            "latency": self.latency,
            "message_id": str(self.message_id) if self.message_id else None,
        }


@dataclasses.dataclass
class FollowupRecord:
    """An accepted followup (``POST /webhooks/{app}/{token}``)."""

    interaction_id: int
    token: str
    payload: dict[str, Any]
    files: list[RecordedFile]
    at: float
    latency: float
    message_id: int
    replaced_original: bool  # the first followup after a deferred (type 5) response edits the original

    @property
    def flags(self) -> int:
        return int(self.payload.get("flags") or 0)

    def to_json(self, include_bytes: bool = False) -> dict[str, Any]:
        return {
            "interaction_id": str(self.interaction_id),
            "token": self.token,
            "payload": self.payload,
            "flags": self.flags,
            "files": [f.to_json(include_bytes) for f in self.files],
            "at": self.at,
            "latency": self.latency,
            "message_id": str(self.message_id),
            "replaced_original": self.replaced_original,
        }


@dataclasses.dataclass
class EditRecord:
    message_id: int
    channel_id: int
    payload: dict[str, Any]
    files: list[RecordedFile]
    at: float
    via: str  # "channel" (PATCH /channels/..), "webhook" (PATCH /webhooks/..), "callback" (type 7)

    def to_json(self, include_bytes: bool = False) -> dict[str, Any]:
        return {
            "message_id": str(self.message_id),
            "channel_id": str(self.channel_id),
            "payload": self.payload,
            "files": [f.to_json(include_bytes) for f in self.files],
            "at": self.at,
            "via": self.via,
        }


@dataclasses.dataclass
class MessageRecord:
    kind: str  # "channel" | "interaction_response" | "followup" | "user" | "external"
    message: dict[str, Any]  # the live Discord message object
    files: list[RecordedFile]
    at: float
    payload: dict[str, Any] = dataclasses.field(default_factory=dict)  # what the bot sent to create it
    interaction_id: int | None = None
    edits: list[EditRecord] = dataclasses.field(default_factory=list)
    deleted: bool = False

    @property
    def id(self) -> int:
        return int(self.message["id"])

    @property
    def channel_id(self) -> int:
        return int(self.message["channel_id"])

    @property
    def content(self) -> str:
        return str(self.message.get("content") or "")

    @property
    def ephemeral(self) -> bool:
        return bool(int(self.message.get("flags") or 0) & FLAG_EPHEMERAL)

    def to_json(self, include_bytes: bool = False) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": str(self.id),
            "channel_id": str(self.channel_id),
            "message": self.message,
            "payload": self.payload,
            "files": [f.to_json(include_bytes) for f in self.files],
            "at": self.at,
            "interaction_id": str(self.interaction_id) if self.interaction_id else None,
            "edits": len(self.edits),
            "deleted": self.deleted,
        }


@dataclasses.dataclass
class CommandPut:
    guild_id: int | None  # None = global commands
    commands: list[dict[str, Any]]
    at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "guild_id": str(self.guild_id) if self.guild_id else None,
            "commands": self.commands,
            "at": self.at,
        }


@dataclasses.dataclass
class RateLimitRule:
    limit: int
    per: float
    enforce: bool = True


@dataclasses.dataclass
class _Window:
    started: float
    count: int = 0


@dataclasses.dataclass
class InjectedError:
    path_contains: str
    method: str | None
    status: int
    code: int
    message: str
    times: int
    retry_after: float | None = None


@dataclasses.dataclass
class InjectedDisconnect:
    path_contains: str
    method: str | None
    after_processing: bool
    times: int


@dataclasses.dataclass
class _StoredAttachment:
    filename: str
    data: bytes
    content_type: str


@dataclasses.dataclass
class _Guild:
    data: dict[str, Any]  # guild payload (with roles)
    members: dict[int, dict[str, Any]]
    channel_ids: list[int]
    upload_limit: int
    joined_at: str
    unavailable: bool = False


# ------------------------------------------------------------------------------------------- gateway


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

    @property
    def connected(self) -> bool:
        return self.conn is not None and not self.conn.ws.closed and not self.invalidated

    def to_json(self, started: float) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "intents": self.intents,
            "seq": self.seq,
            "connected": self.connected,
            "ready": self.ready,
            "invalidated": self.invalidated,
            "identified_at": self.identified_at - started,
        }


def _json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    # discord.py only parses JSON when Content-Type is exactly "application/json" (no charset).
    hdrs = {"Content-Type": "application/json"}
    hdrs.update(headers or {})
    return web.Response(status=status, body=json.dumps(data).encode(), headers=hdrs)


def _trace() -> list[str]:
    return ['["gateway-prd-us-east1-c-fake",{"micros":0.0}]']


def _image_size(data: bytes) -> tuple[int, int] | None:
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            return int(im.size[0]), int(im.size[1])
    except Exception:
        return None


def _guess_content_type(filename: str, data: bytes, sent: str | None) -> str:
    if sent and sent != "application/octet-stream":
        return sent
    sniff = {
        b"\x89PNG": "image/png",
        b"\xff\xd8\xff": "image/jpeg",
        b"GIF8": "image/gif",
        b"RIFF": "image/webp",
    }
    for magic, ctype in sniff.items():
        if data.startswith(magic) and (ctype != "image/webp" or data[8:12] == b"WEBP"):
            return ctype
    if data[4:8] == b"ftyp":
        return "video/mp4"
    guessed, _ = mimetypes.guess_type(filename)
    if guessed is not None and guessed.startswith("text/"):
        guessed += "; charset=utf-8"
    return guessed or "application/octet-stream"


class FakeDiscord:
    """The fake Discord. ``async with FakeDiscord() as fake`` or ``await fake.start()`` / ``stop()``.

    Parameters: ``token`` the bot token it accepts; ``port`` 0 = any free port; ``with_defaults`` builds
    the default world; ``allowed_intents`` the privileged intents the application has enabled
    (``PRIVILEGED_INTENTS`` for all; none by default, like a fresh app — IDENTIFY asking for others is
    closed with 4014 and discord.py raises PrivilegedIntentsRequired); ``heartbeat_interval`` ms;
    ``callback_timeout`` s (None = no limit); ``token_lifetime`` s.
    """

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

    # ------------------------------------------------------------------------------------- lifecycle

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

    async def start(self) -> FakeDiscord:
        app = web.Application(client_max_size=200 * 1024 * 1024)
        self._setup_routes(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, self.port)
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

    async def __aenter__(self) -> FakeDiscord:
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

    # --------------------------------------------------------------------------------------- waiting

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

    async def wait_for_ready(self, timeout: float = 10.0) -> GatewaySession:  # noqa: ASYNC109
        """Wait until a gateway session got READY and its GUILD_CREATEs (fake side, not discord.py's)."""

        def ready() -> GatewaySession | None:
            return next((s for s in self.sessions.values() if s.ready and s.connected), None)

        session: GatewaySession = await self.wait_for(ready, timeout, "a READY gateway session")
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

    # ----------------------------------------------------------------------------------------- model

    def defaults(self) -> dict[str, Any]:
        """The ids payload factories default to (also ``defaults`` in ``GET /_control/state``)."""
        user = self.users.get(self.default_user_id or 0) or p.user_payload(p.DEFAULT_USER_ID, "alice")
        return {
            "application_id": self.application_id,
            "bot_user_id": self.bot_user_id,
            "guild_id": self.default_guild_id,
            "channel_id": self.default_channel_id,
            "user": dict(user),
            "commands": self.registered_commands(),
            "channels": {str(k): v for k, v in self.channels.items()},
        }

    def add_user(
        self, username: str, *, user_id: int | None = None, bot: bool = False, global_name: str | None = None
    ) -> dict[str, Any]:
        uid = user_id or p.snowflake()
        user = p.user_payload(uid, username, bot=bot, global_name=global_name)
        self.users[uid] = user
        return user

    def _user(self, user_id: int) -> dict[str, Any]:
        user = self.users.get(user_id)
        if user is None:
            user = self.add_user(f"user{user_id % 10000}", user_id=user_id)
        return user

    def add_guild(
        self,
        name: str = "Test Server",
        *,
        guild_id: int | None = None,
        owner_id: int | None = None,
        everyone_permissions: int = p.DEFAULT_EVERYONE_PERMISSIONS,
        bot_permissions: int = p.DEFAULT_BOT_PERMISSIONS,
        bot_role_id: int | None = None,
        upload_limit: int = p.DEFAULT_UPLOAD_LIMIT,
        channel_name: str | None = "general",
        channel_id: int | None = None,
        features: Iterable[str] = (),
        premium_tier: int = 0,
        preferred_locale: str = "en-US",
        unavailable: bool = False,
    ) -> dict[str, Any]:
        """Add a guild the bot is in (with @everyone, the bot's managed role and member, a text channel).

        ``unavailable=True`` makes READY list it but never send its GUILD_CREATE (an outage).
        Dispatched as GUILD_CREATE to connected sessions.
        """
        gid = guild_id or p.snowflake()
        owner = owner_id or self.add_user("owner")["id"]
        owner_id = int(owner)
        self._user(owner_id)
        bot_role = p.role_payload(
            bot_role_id or p.snowflake(),
            str(self.bot_user["username"]),
            permissions=bot_permissions,
            position=1,
            managed=True,
            bot_id=self.bot_user_id,
        )
        everyone = p.role_payload(gid, "@everyone", permissions=everyone_permissions, position=0)
        data = p.guild_payload(
            gid,
            name,
            owner_id=owner_id,
            roles=[everyone, bot_role],
            features=features,
            premium_tier=premium_tier,
            preferred_locale=preferred_locale,
        )
        data["application_command_counts"] = {}
        guild = _Guild(
            data=data, members={}, channel_ids=[], upload_limit=upload_limit, joined_at=p.iso_now()
        )
        guild.unavailable = unavailable
        self.guilds[gid] = guild
        guild.members[owner_id] = p.member_payload(self.users[owner_id])
        guild.members[self.bot_user_id] = p.member_payload(self.bot_user, roles=[int(bot_role["id"])])
        if channel_name is not None:
            self.add_channel(gid, channel_name, channel_id=channel_id, _announce=False)
        if not unavailable:
            self._announce_guild(gid)
        return data

    def add_channel(
        self,
        guild_id: int,
        name: str = "channel",
        *,
        channel_id: int | None = None,
        channel_type: int = p.GUILD_TEXT,
        topic: str | None = None,
        nsfw: bool = False,
        parent_id: int | None = None,
        permission_overwrites: Iterable[Mapping[str, Any]] = (),
        _announce: bool = True,
    ) -> dict[str, Any]:
        """Add a guild channel (dispatched as CHANNEL_CREATE)."""
        guild = self.guilds[guild_id]
        cid = channel_id or p.snowflake()
        channel = p.text_channel_payload(
            cid,
            guild_id,
            name,
            position=len(guild.channel_ids),
            topic=topic,
            nsfw=nsfw,
            parent_id=parent_id,
            permission_overwrites=permission_overwrites,
            channel_type=channel_type,
        )
        self.channels[cid] = channel
        guild.channel_ids.append(cid)
        if _announce:
            self._announce(INTENT_GUILDS, "CHANNEL_CREATE", channel)
        return channel

    def add_forum(
        self,
        guild_id: int,
        name: str = "showcase",
        *,
        tags: Iterable[str] = (),
        moderated_tags: Iterable[str] = (),
        require_tag: bool = False,
    ) -> dict[str, Any]:
        """Add a forum channel (type 15) with tags; `require_tag` sets Discord's REQUIRE_TAG flag."""
        channel = self.add_channel(guild_id, name, channel_type=p.GUILD_FORUM, _announce=False)
        moderated = set(moderated_tags)
        channel["available_tags"] = [
            {
                "id": str(p.snowflake()),
                "name": tag,
                "moderated": tag in moderated,
                "emoji_id": None,
                "emoji_name": None,
            }
            for tag in [*tags, *[t for t in moderated_tags if t not in set(tags)]]
        ]
        channel["flags"] = p.CHANNEL_FLAG_REQUIRE_TAG if require_tag else 0
        self._announce(INTENT_GUILDS, "CHANNEL_CREATE", channel)
        return channel

    def add_role(
        self, guild_id: int, name: str, *, permissions: int = 0, role_id: int | None = None, color: int = 0
    ) -> dict[str, Any]:
        guild = self.guilds[guild_id]
        role = p.role_payload(
            role_id or p.snowflake(),
            name,
            permissions=permissions,
            position=len(guild.data["roles"]),
            color=color,
        )
        guild.data["roles"].append(role)
        self._announce(INTENT_GUILDS, "GUILD_ROLE_CREATE", {"guild_id": str(guild_id), "role": role})
        return role

    def set_role_permissions(self, guild_id: int, role_id: int, permissions: int) -> None:
        for role in self.guilds[guild_id].data["roles"]:
            if int(role["id"]) == role_id:
                role["permissions"] = str(permissions)
                self._announce(INTENT_GUILDS, "GUILD_ROLE_UPDATE", {"guild_id": str(guild_id), "role": role})
                return
        raise KeyError(role_id)

    def add_member(
        self,
        guild_id: int,
        user_id: int | None = None,
        *,
        username: str | None = None,
        roles: Iterable[int] = (),
        nick: str | None = None,
        bot: bool = False,
    ) -> dict[str, Any]:
        """Add a member (creating the user if needed). Dispatched as GUILD_MEMBER_ADD."""
        uid = user_id or p.snowflake()
        user = self.users.get(uid) or self.add_user(username or f"user{uid % 10000}", user_id=uid, bot=bot)
        member = p.member_payload(user, roles=roles, nick=nick)
        self.guilds[guild_id].members[uid] = member
        self._announce(INTENT_GUILD_MEMBERS, "GUILD_MEMBER_ADD", {**member, "guild_id": str(guild_id)})
        return member

    def ensure_member(
        self, guild_id: int, user_id: int, roles: Iterable[int] | None = None
    ) -> dict[str, Any]:
        """The member ``user_id`` of ``guild_id``, added if missing; ``roles`` (if given) replace its."""
        guild = self.guilds.get(guild_id)
        if guild is None:
            return p.member_payload(self._user(user_id), roles=roles or ())
        member = guild.members.get(user_id)
        if member is None:
            member = self.add_member(guild_id, user_id, roles=roles or ())
        elif roles is not None:
            member["roles"] = [str(r) for r in roles]
        return member

    def set_overwrite(
        self, channel_id: int, target_id: int, *, allow: int = 0, deny: int = 0, member: bool = False
    ) -> None:
        """Set a channel permission overwrite for a role (or a member); dispatched as CHANNEL_UPDATE."""
        channel = self.channels[channel_id]
        overwrites = [o for o in channel["permission_overwrites"] if int(o["id"]) != target_id]
        if allow or deny:
            overwrites.append(p.overwrite_payload(target_id, allow=allow, deny=deny, member=member))
        channel["permission_overwrites"] = overwrites
        self._announce(INTENT_GUILDS, "CHANNEL_UPDATE", channel)

    def set_upload_limit(self, guild_id: int, limit: int) -> None:
        self.guilds[guild_id].upload_limit = limit

    def upload_limit_for(self, channel_id: int | None) -> int:
        channel = self.channels.get(channel_id or 0)
        if channel is not None and channel.get("guild_id"):
            guild = self.guilds.get(int(channel["guild_id"]))
            if guild is not None:
                return guild.upload_limit
        return p.DEFAULT_UPLOAD_LIMIT

    def open_dm(self, user_id: int) -> dict[str, Any]:
        """The DM channel with ``user_id`` (what ``POST /users/@me/channels`` returns)."""
        cid = self._dm_by_user.get(user_id)
        if cid is None:
            cid = p.snowflake()
            self.channels[cid] = p.dm_channel_payload(cid, self._user(user_id))
            self._dm_by_user[user_id] = cid
        return self.channels[cid]

    def registered_commands(self) -> list[dict[str, Any]]:
        return [c for scope in self._commands.values() for c in scope]

    def permissions_for(self, channel_id: int, user_id: int) -> int:
        """Discord's permission computation: base (@everyone + roles), admin, then channel overwrites."""
        channel = self.channels.get(channel_id)
        if channel is None:
            return 0
        if not channel.get("guild_id"):
            return (
                p.VIEW_CHANNEL
                | p.SEND_MESSAGES
                | p.EMBED_LINKS
                | p.ATTACH_FILES
                | p.READ_MESSAGE_HISTORY
                | p.ADD_REACTIONS
            )
        gid = int(channel["guild_id"])
        guild = self.guilds.get(gid)
        if guild is None:
            return 0
        if int(guild.data["owner_id"]) == user_id:
            return p.ALL_PERMISSIONS
        member = guild.members.get(user_id)
        if member is None:
            return 0
        roles = {int(r["id"]): int(r["permissions"]) for r in guild.data["roles"]}
        member_roles = {int(r) for r in member["roles"]}
        base = roles.get(gid, 0)
        for rid in member_roles:
            base |= roles.get(rid, 0)
        if base & p.ADMINISTRATOR:
            return p.ALL_PERMISSIONS
        overwrites = {int(o["id"]): o for o in channel.get("permission_overwrites", [])}
        everyone = overwrites.get(gid)
        if everyone is not None:
            base = (base & ~int(everyone["deny"])) | int(everyone["allow"])
        allow = deny = 0
        for rid in member_roles:
            ow = overwrites.get(rid)
            if ow is not None and int(ow.get("type", 0)) == 0:
                allow |= int(ow["allow"])
                deny |= int(ow["deny"])
        base = (base & ~deny) | allow
        own = overwrites.get(user_id)
        if own is not None and int(own.get("type", 0)) == 1:
            base = (base & ~int(own["deny"])) | int(own["allow"])
        if not base & p.VIEW_CHANNEL:
            return 0
        if not base & p.SEND_MESSAGES:
            base &= ~(p.SEND_TTS_MESSAGES | p.MENTION_EVERYONE | p.EMBED_LINKS | p.ATTACH_FILES)
        return base

    def add_attachment(
        self,
        filename: str,
        data: bytes,
        content_type: str | None = None,
        *,
        width: int | None = None,
        height: int | None = None,
        channel_id: int | None = None,
        ephemeral: bool = True,
        description: str | None = None,
    ) -> dict[str, Any]:
        """Store a file and return its Discord attachment object, served at ``attachment["url"]``.

        For slash-command attachment options (``ephemeral`` like Discord's uploads there). Image
        width/height are read with Pillow unless given.
        """
        return self._store_attachment(
            filename,
            data,
            content_type,
            width=width,
            height=height,
            channel_id=channel_id or self.default_channel_id or p.snowflake(),
            ephemeral=ephemeral,
            description=description,
        )

    def _store_attachment(
        self,
        filename: str,
        data: bytes,
        content_type: str | None,
        *,
        channel_id: int,
        width: int | None = None,
        height: int | None = None,
        ephemeral: bool = False,
        description: str | None = None,
    ) -> dict[str, Any]:
        aid = p.snowflake()
        ctype = _guess_content_type(filename, data, content_type)
        if (width is None or height is None) and ctype.startswith("image/"):
            size = _image_size(data)
            if size is not None:
                width, height = size
        self._attachments[aid] = _StoredAttachment(filename, data, ctype)
        folder = "ephemeral-attachments" if ephemeral else "attachments"
        issued = int(time.time())
        query = f"?ex={issued + 86400:x}&is={issued:x}&hm={secrets.token_hex(32)}&"
        url = f"{self.url}/{folder}/{channel_id}/{aid}/{filename}{query}"
        proxy_url = f"{self.url}/media/{folder}/{channel_id}/{aid}/{filename}{query}"
        return p.attachment_payload(
            aid,
            filename,
            size=len(data),
            url=url,
            proxy_url=proxy_url,
            content_type=ctype,
            width=width,
            height=height,
            ephemeral=ephemeral,
            description=description,
        )

    def message(self, message_id: int) -> MessageRecord:
        return self._messages_by_id[message_id]

    def channel_messages(self, channel_id: int) -> list[dict[str, Any]]:
        """Visible (not deleted, not ephemeral) messages of a channel, oldest first."""
        return [
            r.message
            for r in self.messages
            if r.channel_id == channel_id and not r.deleted and not r.ephemeral
        ]

    def add_message(
        self,
        channel_id: int,
        content: str = "",
        *,
        author_id: int | None = None,
        attachments: Iterable[Mapping[str, Any]] = (),
        dispatch: bool = True,
    ) -> MessageRecord:
        """A message someone (default: the default user) posted; dispatched as MESSAGE_CREATE."""
        author = self._user(author_id or self.default_user_id or p.DEFAULT_USER_ID)
        msg = self._new_message(channel_id, author, content=content)
        msg["attachments"] = [dict(a) for a in attachments]
        msg["mentions"], msg["mention_roles"], msg["mention_everyone"] = self._mentions(
            content, None, None, channel_id
        )
        record = self._record_message("user", msg, [], {}, dispatch=dispatch)
        return record

    # ------------------------------------------------------------------------------------- behaviour

    def refuse(
        self, channel_id: int, code: int, *, status: int | None = None, message: str | None = None
    ) -> None:
        """Answer every ``/channels/{channel_id}...`` call with this error (50013, 10003, 50001, ...)."""
        self._refusals[channel_id] = (code, status, message)

    def unrefuse(self, channel_id: int) -> None:
        self._refusals.pop(channel_id, None)

    def refuse_dm(self, user_id: int) -> None:
        """Posting in the DM with this user → 403 50007 Cannot send messages to this user."""
        self._refused_dm.add(user_id)

    def unrefuse_dm(self, user_id: int) -> None:
        self._refused_dm.discard(user_id)

    def expire_token(self, token: str) -> None:
        """Webhook calls with this interaction token → 401 50027 Invalid Webhook Token."""
        self._expired_tokens.add(token)

    def expire_interaction(self, interaction_id: int) -> None:
        """A callback for this interaction → 404 10062 Unknown interaction (as after 3 s)."""
        self.interactions[interaction_id].expired = True

    def set_rate_limit(self, name: str, limit: int, per: float, *, enforce: bool = True) -> None:
        """Bucket ``name``: message_create, message_edit, message_delete, webhook, default."""
        self.rate_limits[name] = RateLimitRule(limit, per, enforce)
        for key in [k for k in self._windows if k[0] == name]:
            del self._windows[key]

    def inject_error(
        self,
        path_contains: str,
        *,
        method: str | None = None,
        status: int = 500,
        code: int = 0,
        message: str = "500: Internal Server Error",
        times: int = 1,
        retry_after: float | None = None,
    ) -> None:
        """Fail the next ``times`` API requests whose path (after /api/v10) contains ``path_contains``.

        discord.py retries 500/502/504 itself (sleeping 1 s, 3 s, ...), so prefer 4xx/503 for speed.
        ``retry_after`` answers Discord's own 429 instead (its body, ``Retry-After`` and ``Via``), as when
        another process on the same token emptied the bucket.
        """
        self._injected.append(InjectedError(path_contains, method, status, code, message, times, retry_after))

    def inject_disconnect(
        self, path_contains: str, *, method: str | None = None, after_processing: bool = False, times: int = 1
    ) -> None:
        """Drop the connection of the next ``times`` matching API requests without an answer (the client
        sees a transport error, not an HTTP status); with ``after_processing`` the request takes effect
        first (a message is created), so the client cannot know whether it did."""
        self._disconnects.append(InjectedDisconnect(path_contains, method, after_processing, times))

    def reset_records(self) -> None:
        """Forget recorded requests, callbacks, followups, edits, deletions, command PUTs and the
        invalid-request count. Messages stay (they are channel history), as do the model and sessions."""
        self.requests.clear()
        self.unhandled.clear()
        self.callbacks.clear()
        self.followups.clear()
        self.edits.clear()
        self.deletions.clear()
        self.command_puts.clear()
        self.invalid_requests = 0
        self._notify()

    # --------------------------------------------------------------------------------------- gateway

    async def dispatch_interaction(self, payload: Mapping[str, Any]) -> InteractionRecord:
        """Send INTERACTION_CREATE to every connected session; the dispatch time starts the 3 s clock."""
        data = dict(payload)
        iid = int(data["id"])
        record = InteractionRecord(
            id=iid, token=str(data["token"]), type=int(data["type"]), payload=data, dispatched_at=now()
        )
        self.interactions[iid] = record
        self._interactions_by_token[record.token] = record
        for session in list(self.sessions.values()):
            if session.connected and session.ready:
                record.delivered_to.append(session.session_id)
                await self._send_dispatch(session, "INTERACTION_CREATE", data)
        self._notify()
        return record

    async def dispatch(self, event: str, data: Mapping[str, Any]) -> int:
        """Send any dispatch event to every ready session (buffered for disconnected, resumable ones)."""
        count = 0
        for session in list(self.sessions.values()):
            if session.ready and not session.invalidated:
                await self._send_dispatch(session, event, dict(data))
                count += session.connected
        return count

    def _announce(self, intent: int, event: str, data: Mapping[str, Any]) -> None:
        targets = [s for s in self.sessions.values() if s.ready and not s.invalidated and s.intents & intent]
        for session in targets:
            self._spawn(self._send_dispatch(session, event, dict(data)))

    def _announce_guild(self, guild_id: int) -> None:
        for session in [s for s in self.sessions.values() if s.ready and not s.invalidated]:
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
            channels=[self.channels[c] for c in guild.channel_ids],
            threads=[],
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
        session = GatewaySession(session_id=secrets.token_hex(16), intents=intents, identified_at=now())
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
            "guilds": [{"id": str(gid), "unavailable": True} for gid in self.guilds],
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
            if not guild.unavailable:
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

    # ------------------------------------------------------------------------------------- REST glue

    def _setup_routes(self, app: web.Application) -> None:
        def r(method: str, path: str, handler: _Handler, **kwargs: Any) -> None:
            self._api_route(app, method, path, handler, **kwargs)

        r("GET", "/users/@me", self._get_me)
        r("GET", "/users/{user_id}", self._get_user)
        r("POST", "/users/@me/channels", self._create_dm)
        r("GET", "/oauth2/applications/@me", self._get_application)
        r("GET", "/applications/@me", self._get_application)
        r("GET", "/gateway", self._get_gateway, auth=False)
        r("GET", "/gateway/bot", self._get_gateway)
        r("GET", "/applications/{app_id}/commands", self._get_commands)
        r("PUT", "/applications/{app_id}/commands", self._put_commands)
        r("POST", "/applications/{app_id}/commands", self._post_command)
        r("GET", "/applications/{app_id}/guilds/{guild_id}/commands", self._get_commands)
        r("PUT", "/applications/{app_id}/guilds/{guild_id}/commands", self._put_commands)
        r("POST", "/applications/{app_id}/guilds/{guild_id}/commands", self._post_command)
        r("GET", "/applications/{app_id}/guilds/{guild_id}/commands/permissions", self._get_command_perms)
        r(
            "POST",
            "/interactions/{interaction_id}/{token}/callback",
            self._interaction_callback,
            auth=False,
            bucket="callback",
            major=("interaction_id",),
        )
        wh = {"auth": False, "bucket": "webhook", "major": ("app_id", "token")}
        r("POST", "/webhooks/{app_id}/{token}", self._webhook_execute, **wh)
        r("GET", "/webhooks/{app_id}/{token}/messages/{message_id}", self._webhook_get_message, **wh)
        r("PATCH", "/webhooks/{app_id}/{token}/messages/{message_id}", self._webhook_edit_message, **wh)
        r("DELETE", "/webhooks/{app_id}/{token}/messages/{message_id}", self._webhook_delete_message, **wh)
        ch = {"major": ("channel_id",)}
        r("GET", "/channels/{channel_id}", self._get_channel, **ch)
        r("POST", "/channels/{channel_id}/messages", self._create_message, bucket="message_create", **ch)
        r("GET", "/channels/{channel_id}/messages", self._list_messages, **ch)
        r("GET", "/channels/{channel_id}/messages/{message_id}", self._get_message, **ch)
        r(
            "PATCH",
            "/channels/{channel_id}/messages/{message_id}",
            self._edit_message,
            bucket="message_edit",
            **ch,
        )
        r(
            "DELETE",
            "/channels/{channel_id}/messages/{message_id}",
            self._delete_message,
            bucket="message_delete",
            **ch,
        )
        r("POST", "/channels/{channel_id}/typing", self._typing, **ch)
        r("POST", "/channels/{channel_id}/threads", self._start_forum_thread, bucket="thread_create", **ch)
        r("DELETE", "/channels/{channel_id}", self._delete_channel, **ch)
        gd = {"major": ("guild_id",)}
        r("GET", "/guilds/{guild_id}", self._get_guild, **gd)
        r("DELETE", "/users/@me/guilds/{guild_id}", self._leave_guild, **gd)
        r("GET", "/guilds/{guild_id}/channels", self._get_guild_channels, **gd)
        r("GET", "/guilds/{guild_id}/roles", self._get_guild_roles, **gd)
        r("GET", "/guilds/{guild_id}/members", self._list_members, **gd)
        r("GET", "/guilds/{guild_id}/members/{user_id}", self._get_member, **gd)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._unknown_route)

        app.router.add_get(GATEWAY_PATH, self._gateway_handler)
        app.router.add_get(GATEWAY_PATH + "/", self._gateway_handler)
        for folder in ("attachments", "ephemeral-attachments"):
            app.router.add_get(
                f"/{folder}/{{channel_id}}/{{attachment_id}}/{{filename}}", self._serve_attachment
            )
            app.router.add_get(
                f"/media/{folder}/{{channel_id}}/{{attachment_id}}/{{filename}}", self._serve_attachment
            )

        control: list[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]] = [
            ("GET", "state", self._control_state),
            ("GET", "wait", self._control_wait),
            ("POST", "interactions", self._control_interactions),
            ("POST", "dispatch", self._control_dispatch),
            ("POST", "attachments", self._control_attachments),
            ("POST", "config", self._control_config),
            ("POST", "model", self._control_model),
            ("POST", "gateway", self._control_gateway),
            ("POST", "reset", self._control_reset),
        ]
        for method, name, handler in control:
            app.router.add_route(method, f"/_control/{name}", self._control_errors(handler))

    @staticmethod
    def _control_errors(
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Control API mistakes come back as JSON ``{"error": ...}`` with status 400."""

        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except Exception as exc:
                return _json_response({"error": f"{type(exc).__name__}: {exc}"}, 400)

        return wrapped

    def _api_route(
        self,
        app: web.Application,
        method: str,
        path: str,
        handler: _Handler,
        *,
        auth: bool = True,
        bucket: str = "default",
        major: tuple[str, ...] = (),
    ) -> None:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            return await self._serve_api(request, handler, auth=auth, bucket=bucket, major=major)

        app.router.add_route(method, API_PREFIX + path, wrapped)

    async def _serve_api(
        self,
        request: web.Request,
        handler: _Handler,
        *,
        auth: bool,
        bucket: str,
        major: tuple[str, ...],
    ) -> web.StreamResponse:
        path = request.path[len(API_PREFIX) :]
        rec = RecordedRequest(request.method, path, dict(request.query), self._elapsed())
        rec.headers = {
            k: v for k, v in request.headers.items() if k.lower() in ("x-audit-log-reason", "content-type")
        }
        self.requests.append(rec)
        headers: dict[str, str] = {"Via": "1.1 google", "X-Fake-Discord": "1"}
        try:
            if auth and request.headers.get("Authorization") != f"Bot {self.token}":
                raise DiscordError(0)
            major_value = ":".join(request.match_info.get(k, "") for k in major)
            headers.update(self._rate_limit(bucket, major_value))
            injected = self._take_injected(request.method, path)
            if injected is not None:
                raise injected
            disconnect = self._take_disconnect(request.method, path)
            if disconnect is not None:
                if disconnect.after_processing:
                    await handler(request, rec)
                self._notify()
                if request.transport is not None:
                    request.transport.abort()
                raise ConnectionResetError("fake Discord dropped the connection")
            response = await handler(request, rec)
        except DiscordError as err:
            headers.update(err.headers)
            rec.error_code = err.code
            response = _json_response(err.body(), err.status)
        for key, value in headers.items():
            response.headers.setdefault(key, value)
        rec.status = response.status
        if response.status in (401, 403, 429):
            self.invalid_requests += 1
        self._notify()
        return response

    def _take_disconnect(self, method: str, path: str) -> InjectedDisconnect | None:
        for drop in self._disconnects:
            if drop.path_contains in path and (drop.method is None or drop.method.upper() == method):
                drop.times -= 1
                if drop.times <= 0:
                    self._disconnects.remove(drop)
                return drop
        return None

    def _take_injected(self, method: str, path: str) -> DiscordError | None:
        for inj in self._injected:
            if inj.path_contains in path and (inj.method is None or inj.method.upper() == method):
                inj.times -= 1
                if inj.times <= 0:
                    self._injected.remove(inj)
                if inj.retry_after is not None:
                    headers = {"Retry-After": str(math.ceil(inj.retry_after)), "X-RateLimit-Scope": "shared"}
                    return _RateLimited(inj.retry_after, headers)
                return DiscordError(inj.code, inj.message, status=inj.status)
        return None

    def _rate_limit(self, bucket: str, major: str) -> dict[str, str]:
        rule = self.rate_limits.get(bucket) or self.rate_limits["default"]
        t = now()
        key = (bucket, major)
        window = self._windows.get(key)
        if window is None or t >= window.started + rule.per:
            window = self._windows[key] = _Window(started=t)
        reset_after = max(window.started + rule.per - t, 0.0)
        reset_after = math.ceil(reset_after * 1000) / 1000
        bucket_hash = hashlib.md5(f"{bucket}".encode()).hexdigest()
        headers = {
            "X-RateLimit-Limit": str(rule.limit),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": bucket_hash,
        }
        if window.count >= rule.limit and rule.enforce:
            headers.update(
                {
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Scope": "user",
                    "Retry-After": str(math.ceil(reset_after)),
                }
            )
            raise _RateLimited(reset_after, headers)
        window.count += 1
        headers["X-RateLimit-Remaining"] = str(max(rule.limit - window.count, 0))
        return headers

    async def _unknown_route(self, request: web.Request) -> web.StreamResponse:
        rec = RecordedRequest(
            request.method, request.path[len(API_PREFIX) :], dict(request.query), self._elapsed()
        )
        rec.status = 404
        with contextlib.suppress(Exception):
            rec.body = await request.text()
        self.requests.append(rec)
        self.unhandled.append(rec)
        self._notify()
        return _json_response({"message": "404: Not Found", "code": 0}, 404, {"Via": "1.1 google"})

    async def _read_body(
        self, request: web.Request, rec: RecordedRequest
    ) -> tuple[dict[str, Any], list[RecordedFile]]:
        """JSON body, or multipart ``payload_json`` + ``files[n]`` parts (recorded on ``rec``)."""
        files: list[RecordedFile] = []
        payload: Any = {}
        ctype = request.content_type
        if ctype.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, aiohttp.BodyPartReader):
                    continue
                name = part.name or ""
                if name == "payload_json":
                    try:
                        payload = json.loads(await part.text())
                    except ValueError:
                        raise DiscordError(50109) from None
                elif part.filename is not None or name.startswith("file"):
                    data = bytes(await part.read(decode=False))
                    sent_type = part.headers.get(aiohttp.hdrs.CONTENT_TYPE, "application/octet-stream")
                    files.append(RecordedFile(name, part.filename or name, sent_type, data))
        else:
            raw = await request.read()
            if raw:
                try:
                    payload = json.loads(raw)
                except ValueError:
                    raise DiscordError(50109) from None
        rec.body = payload
        rec.files = files
        if not isinstance(payload, dict | list):
            raise DiscordError(50109)
        return payload if isinstance(payload, dict) else {"_list": payload}, files

    # --------------------------------------------------------------------------------- users / app

    async def _get_me(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        return _json_response(
            {**self.bot_user, "verified": True, "mfa_enabled": False, "email": None, "locale": "en-US"}
        )

    async def _get_user(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        user = self.users.get(_int(request.match_info["user_id"]))
        if user is None:
            raise DiscordError(10013)
        return _json_response(user)

    async def _create_dm(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        payload, _ = await self._read_body(request, rec)
        recipient = payload.get("recipient_id")
        if recipient is None:
            raise form_error("recipient_id", "BASE_TYPE_REQUIRED", "This field is required")
        return _json_response(self.open_dm(_int(recipient)))

    async def _get_application(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        owner_id = next((int(g.data["owner_id"]) for g in self.guilds.values()), p.DEFAULT_OWNER_ID)
        return _json_response(
            {
                "id": str(self.application_id),
                "name": self.bot_user["username"],
                "icon": None,
                "description": "",
                "summary": "",
                "type": None,
                "is_monetized": False,
                "is_verified": False,
                "is_discoverable": False,
                "hook": True,
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": hashlib.sha256(str(self.application_id).encode()).hexdigest(),
                "owner": self._user(owner_id),
                "flags": self._application_flags(),
                "team": None,
                "tags": [],
                "redirect_uris": [],
                "interactions_endpoint_url": None,
                "role_connections_verification_url": None,
                "install_params": {"scopes": ["bot", "applications.commands"], "permissions": "117760"},
                "integration_types_config": {"0": {}},
                "approximate_guild_count": len(self.guilds),
                "approximate_user_install_count": 0,
                "bot": self.bot_user,
            }
        )

    async def _get_gateway(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        data: dict[str, Any] = {"url": self.gateway_url}
        if request.path.endswith("/bot"):
            data.update(
                shards=1,
                session_start_limit={
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 86_400_000,
                    "max_concurrency": 1,
                },
            )
        return _json_response(data)

    # ------------------------------------------------------------------------------------- commands

    def _check_app(self, request: web.Request) -> None:
        if _int(request.match_info["app_id"]) != self.application_id:
            raise DiscordError(50001)

    def _command_scope(self, request: web.Request) -> int | None:
        self._check_app(request)
        gid = request.match_info.get("guild_id")
        if gid is None:
            return None
        if _int(gid) not in self.guilds:
            raise DiscordError(50001)
        return _int(gid)

    async def _get_commands(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        return _json_response(self._commands.get(self._command_scope(request), []))

    async def _get_command_perms(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        scope = self._command_scope(request)
        return _json_response(self.command_permissions.get(scope or 0, []))

    def _normalise_command(self, scope: int | None, data: Mapping[str, Any], index: int) -> dict[str, Any]:
        name = data.get("name")
        ctype = int(data.get("type", 1))
        if not isinstance(name, str) or not 1 <= len(name) <= 32:
            raise form_error(f"{index}.name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 32 in length.")
        if ctype == 1 and (name != name.lower() or not re.fullmatch(r"[-_\w]+", name)):
            raise form_error(f"{index}.name", "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
        description = data.get("description") or ""
        if ctype == 1 and not 1 <= len(description) <= 100:
            raise form_error(
                f"{index}.description", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
            )
        options = list(data.get("options") or [])
        if len(options) > 25:
            raise form_error(f"{index}.options", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        seen_optional = False
        for i, opt in enumerate(options):
            if opt.get("type") in (1, 2):
                continue
            if opt.get("required"):
                if seen_optional:
                    raise form_error(
                        f"{index}.options.{i}.required",
                        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                        "Required options must be placed before non-required options",
                    )
            else:
                seen_optional = True
        existing = next(
            (c for c in self._commands.get(scope, []) if c["name"] == name and c["type"] == ctype), None
        )
        out: dict[str, Any] = {
            "id": existing["id"] if existing else str(p.snowflake()),
            "application_id": str(self.application_id),
            "version": str(p.snowflake()),
            "default_member_permissions": data.get("default_member_permissions"),
            "type": ctype,
            "name": name,
            "name_localizations": data.get("name_localizations"),
            "description": description,
            "description_localizations": data.get("description_localizations"),
            "dm_permission": data.get("dm_permission", True),
            "contexts": data.get("contexts"),
            "integration_types": data.get("integration_types", [0]),
            "nsfw": bool(data.get("nsfw", False)),
            "options": options,
        }
        if scope is not None:
            out["guild_id"] = str(scope)
        return out

    async def _put_commands(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        scope = self._command_scope(request)
        payload, _ = await self._read_body(request, rec)
        items = payload.get("_list")
        if not isinstance(items, list):
            raise form_error("_", "LIST_TYPE_CONVERT", "Must be a list.")
        if len(items) > 100:
            raise form_error("_", "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
        commands = [self._normalise_command(scope, c, i) for i, c in enumerate(items)]
        names = [(c["name"], c["type"]) for c in commands]
        if len(set(names)) != len(names):
            raise form_error(
                "_", "APPLICATION_COMMANDS_DUPLICATE_NAME", "Application command names must be unique"
            )
        self._commands[scope] = commands
        self.command_puts.append(CommandPut(scope, commands, self._elapsed()))
        return _json_response(commands)

    async def _post_command(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        scope = self._command_scope(request)
        payload, _ = await self._read_body(request, rec)
        command = self._normalise_command(scope, payload, 0)
        existing = self._commands.setdefault(scope, [])
        created = all(c["id"] != command["id"] for c in existing)
        self._commands[scope] = [c for c in existing if c["id"] != command["id"]] + [command]
        return _json_response(command, 201 if created else 200)

    # --------------------------------------------------------------------------------- interactions

    def _interaction_for_callback(self, request: web.Request) -> InteractionRecord:
        record = self.interactions.get(_int(request.match_info["interaction_id"]))
        if record is None or record.token != request.match_info["token"]:
            raise DiscordError(10062)
        return record

    async def _interaction_callback(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        record = self._interaction_for_callback(request)
        payload, files = await self._read_body(request, rec)
        received = now()
        late = self.callback_timeout is not None and received - record.dispatched_at > self.callback_timeout
        if record.expired or late or record.token in self._expired_tokens:
            raise DiscordError(10062)
        if record.acknowledged:
            raise DiscordError(40060)
        ctype = payload.get("type")
        allowed = {
            p.APPLICATION_COMMAND: {4, 5, 9},
            p.MESSAGE_COMPONENT: {4, 5, 6, 7, 9},
            p.APPLICATION_COMMAND_AUTOCOMPLETE: {8},
            p.MODAL_SUBMIT: {4, 5, 6, 7},
        }.get(record.type, set())
        if ctype not in allowed:
            raise form_error("type", "INTERACTION_RESPONSE_TYPE_INVALID", f"Invalid response type {ctype}")
        data = dict(payload.get("data") or {})
        self._check_files(files, record.attachment_size_limit)
        channel_id = record.channel_id or 0
        message_id: int | None = None
        resource: dict[str, Any] = {"type": ctype}
        if ctype in (4, 5):
            flags = int(data.get("flags") or 0)
            if ctype == 5:
                msg = self._new_message(channel_id, self.bot_user, content="")
                msg["flags"] = FLAG_LOADING | (flags & FLAG_EPHEMERAL)
                files_used: list[RecordedFile] = []
            else:
                msg = self._build_message(channel_id, data, files, allow_ephemeral=True)
                files_used = files
            self._decorate_interaction_message(msg, record)
            self._record_message(
                "interaction_response",
                msg,
                files_used,
                data,
                interaction=record,
                dispatch=not (flags & FLAG_EPHEMERAL),
            )
            message_id = int(msg["id"])
            record.original_message_id = message_id
            resource["message"] = msg
        elif ctype in (6, 7):
            target = (record.payload.get("message") or {}).get("id")
            if target is not None:
                message_id = int(target)
                record.original_message_id = message_id
                stored = self._messages_by_id.get(message_id)
                if stored is None and ctype == 7:
                    message = dict(record.payload["message"])
                    stored = self._record_message("external", message, [], {}, dispatch=False)
                if ctype == 7 and stored is not None:
                    self._apply_edit(stored, data, files, via="callback")
                    resource["message"] = stored.message
        record.acknowledged = True
        record.ack_type = ctype
        if message_id is not None and message_id not in record.message_ids:
            record.message_ids.append(message_id)
        self.callbacks.append(
            CallbackRecord(
                interaction_id=record.id,
                token=record.token,
                type=ctype,
                data=data,
                files=files,
                at=self._elapsed(),
                latency=received - record.dispatched_at,
                message_id=message_id,
            )
        )
        if request.query.get("with_response", "").lower() not in ("1", "true"):
            return web.Response(status=204)
        flags = int(data.get("flags") or 0)
        interaction_info: dict[str, Any] = {"id": str(record.id), "type": record.type}
        if ctype in (4, 5) and message_id is not None:
            interaction_info.update(
                response_message_id=str(message_id),
                response_message_loading=ctype == 5,
                response_message_ephemeral=bool(flags & FLAG_EPHEMERAL),
            )
        return _json_response({"interaction": interaction_info, "resource": resource})

    def _decorate_interaction_message(self, msg: dict[str, Any], record: InteractionRecord) -> None:
        invoker = (record.payload.get("member") or {}).get("user") or record.payload.get("user") or {}
        data = record.payload.get("data") or {}
        msg["webhook_id"] = str(self.application_id)
        msg["application_id"] = str(self.application_id)
        if record.type == p.APPLICATION_COMMAND:
            msg["type"] = 20
        metadata: dict[str, Any] = {
            "id": str(record.id),
            "type": record.type,
            "user": invoker,
            "authorizing_integration_owners": record.payload.get("authorizing_integration_owners", {}),
        }
        if record.type == p.APPLICATION_COMMAND:
            metadata.update(name=data.get("name"), command_type=data.get("type", 1))
        elif record.payload.get("message"):
            metadata["interacted_message_id"] = str(record.payload["message"]["id"])
        msg["interaction_metadata"] = metadata
        if record.type == p.APPLICATION_COMMAND:
            msg["interaction"] = {
                "id": str(record.id),
                "type": record.type,
                "name": data.get("name"),
                "user": invoker,
            }

    def _webhook_interaction(self, request: web.Request) -> InteractionRecord:
        if _int(request.match_info["app_id"]) != self.application_id:
            raise DiscordError(10015)
        token = request.match_info["token"]
        record = self._interactions_by_token.get(token)
        if (
            record is None
            or token in self._expired_tokens
            or now() - record.dispatched_at > self.token_lifetime
        ):
            raise DiscordError(50027)
        return record

    async def _webhook_execute(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        record = self._webhook_interaction(request)
        payload, files = await self._read_body(request, rec)
        if not record.acknowledged:
            raise DiscordError(10015)
        self._check_files(files, record.attachment_size_limit)
        received = now()
        original = self._messages_by_id.get(record.original_message_id or 0)
        replaced = original is not None and bool(int(original.message.get("flags") or 0) & FLAG_LOADING)
        if original is not None and replaced:
            # After a deferred response the first followup fills the "thinking" message (keeping its
            # ephemerality), as Discord does.
            edit = {k: v for k, v in payload.items() if k != "flags"}
            self._apply_edit(original, edit, files, via="webhook", record_edit=False)
            original.message["flags"] = int(original.message.get("flags") or 0) & ~FLAG_LOADING
            msg = original.message
        else:
            msg = self._build_message(record.channel_id or 0, payload, files, allow_ephemeral=True)
            self._decorate_interaction_message(msg, record)
            ephemeral = bool(int(msg.get("flags") or 0) & FLAG_EPHEMERAL)
            self._record_message("followup", msg, files, payload, interaction=record, dispatch=not ephemeral)
        message_id = int(msg["id"])
        if message_id not in record.message_ids:
            record.message_ids.append(message_id)
        self.followups.append(
            FollowupRecord(
                interaction_id=record.id,
                token=record.token,
                payload=payload,
                files=files,
                at=self._elapsed(),
                latency=received - record.dispatched_at,
                message_id=message_id,
                replaced_original=replaced,
            )
        )
        if request.query.get("wait", "").lower() in ("1", "true"):
            return _json_response(msg)
        return web.Response(status=204)

    def _webhook_target(self, request: web.Request, record: InteractionRecord) -> MessageRecord:
        raw = request.match_info["message_id"]
        if raw == "@original":
            if not record.acknowledged:
                raise DiscordError(10015)
            mid = record.original_message_id
        else:
            mid = _int(raw)
            if mid not in record.message_ids:
                raise DiscordError(10008)
        stored = self._messages_by_id.get(mid or 0)
        if stored is None or stored.deleted:
            raise DiscordError(10008)
        return stored

    async def _webhook_get_message(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        record = self._webhook_interaction(request)
        return _json_response(self._webhook_target(request, record).message)

    async def _webhook_edit_message(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        record = self._webhook_interaction(request)
        stored = self._webhook_target(request, record)
        payload, files = await self._read_body(request, rec)
        self._check_files(files, record.attachment_size_limit)
        self._apply_edit(stored, payload, files, via="webhook")
        stored.message["flags"] = int(stored.message.get("flags") or 0) & ~FLAG_LOADING
        return _json_response(stored.message)

    async def _webhook_delete_message(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        record = self._webhook_interaction(request)
        stored = self._webhook_target(request, record)
        self._delete(stored)
        return web.Response(status=204)

    # ------------------------------------------------------------------------------------- channels

    def _channel(self, request: web.Request) -> dict[str, Any]:
        cid = _int(request.match_info["channel_id"])
        refusal = self._refusals.get(cid)
        if refusal is not None:
            code, status, message = refusal
            raise DiscordError(code, message, status=status)
        channel = self.channels.get(cid)
        if channel is None:
            raise DiscordError(10003)
        visible = self.permissions_for(cid, self.bot_user_id) & p.VIEW_CHANNEL
        if channel.get("guild_id") and self.enforce_permissions and not visible:
            raise DiscordError(50001)
        return channel

    async def _get_channel(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        return _json_response(self._channel(request))

    async def _typing(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        self._channel(request)
        return web.Response(status=204)

    def _check_files(self, files: list[RecordedFile], limit: int) -> None:
        if any(f.size > limit for f in files):
            raise DiscordError(40005)

    async def _create_message(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        channel = self._channel(request)
        cid = int(channel["id"])
        payload, files = await self._read_body(request, rec)
        if channel["type"] == p.DM:
            recipient = int(channel["recipients"][0]["id"])
            if recipient in self._refused_dm:
                raise DiscordError(50007)
        elif channel["type"] not in (p.GUILD_TEXT, p.GUILD_VOICE, 5, 10, 11, 12):
            raise DiscordError(50008)
        drop_embeds = False
        if channel.get("guild_id") and self.enforce_permissions:
            perms = self.permissions_for(cid, self.bot_user_id)
            if not perms & p.SEND_MESSAGES:
                raise DiscordError(50013)
            if files and not perms & p.ATTACH_FILES:
                raise DiscordError(50013)
            if payload.get("message_reference") and not perms & p.READ_MESSAGE_HISTORY:
                raise DiscordError(160002)
            drop_embeds = not perms & p.EMBED_LINKS
        self._check_files(files, self.upload_limit_for(cid))
        nonce = payload.get("nonce")
        if nonce is not None and payload.get("enforce_nonce"):
            horizon = self._elapsed() - 120.0
            for existing in reversed(self.messages):
                if existing.at < horizon:
                    break
                if (
                    existing.kind == "channel"
                    and existing.channel_id == cid
                    and existing.message.get("nonce") == str(nonce)
                ):
                    return _json_response(existing.message)
        if drop_embeds:
            payload = {**payload, "embeds": []}
        msg = self._build_message(cid, payload, files)
        if nonce is not None:
            msg["nonce"] = str(nonce)
        self._record_message("channel", msg, files, payload)
        return _json_response(msg)

    async def _start_forum_thread(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        """A forum post: a public thread (type 11) and its first message, made in one call."""
        forum = self._channel(request)
        if forum["type"] != p.GUILD_FORUM:
            raise DiscordError(50024, "Cannot execute action on this channel type", status=400)
        fid = int(forum["id"])
        payload, files = await self._read_body(request, rec)
        if self.enforce_permissions and not self.permissions_for(fid, self.bot_user_id) & p.SEND_MESSAGES:
            raise DiscordError(50013)
        name = str(payload.get("name") or "")
        if not 1 <= len(name) <= 100:
            raise form_error("name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        tags = [str(t) for t in payload.get("applied_tags") or []]
        known = {t["id"] for t in forum.get("available_tags", [])}
        if any(t not in known for t in tags):
            raise form_error("applied_tags", "UNKNOWN_TAG", "Unknown tag.")
        if int(forum.get("flags", 0)) & p.CHANNEL_FLAG_REQUIRE_TAG and not tags:
            raise DiscordError(40067)
        message_payload = dict(payload.get("message") or {})
        self._check_files(files, self.upload_limit_for(fid))
        guild_id = int(forum["guild_id"])
        thread = self.add_channel(
            guild_id, name, channel_type=p.PUBLIC_THREAD, parent_id=fid, _announce=False
        )
        thread.update(
            owner_id=str(self.bot_user_id),
            applied_tags=tags,
            thread_metadata={
                "archived": False,
                "auto_archive_duration": 4320,
                "archive_timestamp": p.iso_now(),
                "locked": False,
            },
            message_count=1,
            member_count=1,
        )
        msg = self._build_message(int(thread["id"]), message_payload, files)
        msg["id"] = thread["id"]  # a forum post's first message has the thread's id
        self._record_message("channel", msg, files, message_payload)
        self._announce(INTENT_GUILDS, "THREAD_CREATE", {**thread, "newly_created": True})
        return _json_response({**thread, "message": msg}, 201)

    async def _delete_channel(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        channel = self._channel(request)
        cid = int(channel["id"])
        is_own_thread = int(channel.get("owner_id", 0)) == self.bot_user_id
        may_manage = self.permissions_for(cid, self.bot_user_id) & p.MANAGE_CHANNELS
        if self.enforce_permissions and not is_own_thread and not may_manage:
            raise DiscordError(50013)
        del self.channels[cid]
        guild = self.guilds.get(int(channel["guild_id"]))
        if guild is not None and cid in guild.channel_ids:
            guild.channel_ids.remove(cid)
        for stored in [r for r in self.messages if r.channel_id == cid and not r.deleted]:
            self._delete(stored)
        return _json_response(channel)

    async def _list_messages(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        channel = self._channel(request)
        cid = int(channel["id"])
        if (
            channel.get("guild_id")
            and not self.permissions_for(cid, self.bot_user_id) & p.READ_MESSAGE_HISTORY
        ):
            return _json_response([])
        try:
            limit = int(request.query.get("limit", "50"))
        except ValueError:
            raise form_error("limit", "NUMBER_TYPE_COERCE", "Value is not int.") from None
        if not 1 <= limit <= 100:
            raise form_error("limit", "NUMBER_TYPE_MAX", "int value should be between 1 and 100.")
        visible = [m for m in self.channel_messages(cid)]  # oldest first
        if "before" in request.query:
            before = _int(request.query["before"])
            visible = [m for m in visible if int(m["id"]) < before][-limit:]
        elif "after" in request.query:
            after = _int(request.query["after"])
            visible = [m for m in visible if int(m["id"]) > after][:limit]
        elif "around" in request.query:
            around = _int(request.query["around"])
            older = [m for m in visible if int(m["id"]) < around][-(limit // 2) :] if limit > 1 else []
            rest = [m for m in visible if int(m["id"]) >= around][: limit - len(older)]
            visible = older + rest
        else:
            visible = visible[-limit:]
        return _json_response(list(reversed(visible)))  # newest first, like Discord

    def _channel_message(self, request: web.Request) -> MessageRecord:
        channel = self._channel(request)
        stored = self._messages_by_id.get(_int(request.match_info["message_id"]))
        if stored is None or stored.deleted or stored.ephemeral or stored.channel_id != int(channel["id"]):
            raise DiscordError(10008)
        return stored

    async def _get_message(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        return _json_response(self._channel_message(request).message)

    async def _edit_message(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        stored = self._channel_message(request)
        payload, files = await self._read_body(request, rec)
        if int(stored.message["author"]["id"]) != self.bot_user_id and set(payload) - {"flags"}:
            raise DiscordError(50005)
        self._check_files(files, self.upload_limit_for(stored.channel_id))
        self._apply_edit(stored, payload, files, via="channel")
        return _json_response(stored.message)

    async def _delete_message(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        stored = self._channel_message(request)
        can_manage = self.permissions_for(stored.channel_id, self.bot_user_id) & p.MANAGE_MESSAGES
        if int(stored.message["author"]["id"]) != self.bot_user_id and not can_manage:
            raise DiscordError(50013)
        self._delete(stored)
        return web.Response(status=204)

    # --------------------------------------------------------------------------------------- guilds

    def _guild(self, request: web.Request) -> _Guild:
        guild = self.guilds.get(_int(request.match_info["guild_id"]))
        if guild is None:
            raise DiscordError(10004)
        return guild

    async def _get_guild(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        guild = self._guild(request)
        data = dict(guild.data)
        if request.query.get("with_counts", "").lower() in ("1", "true"):
            data.update(approximate_member_count=len(guild.members), approximate_presence_count=0)
        return _json_response(data)

    async def _leave_guild(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        """The bot leaves a guild: it is gone from the fake, and sessions get GUILD_DELETE."""
        guild_id = _int(request.match_info["guild_id"])
        self._guild(request)
        del self.guilds[guild_id]
        self.left_guilds.append(guild_id)
        self._notify()
        for session in [s for s in self.sessions.values() if s.ready and not s.invalidated]:
            self._spawn(self._send_dispatch(session, "GUILD_DELETE", {"id": str(guild_id)}))
        return web.Response(status=204)

    async def _get_guild_channels(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        return _json_response([self.channels[c] for c in self._guild(request).channel_ids])

    async def _get_guild_roles(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        return _json_response(self._guild(request).data["roles"])

    async def _list_members(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        guild = self._guild(request)
        limit = _int(request.query.get("limit", "1"))
        after = _int(request.query.get("after", "0"))
        members = sorted(
            (m for uid, m in guild.members.items() if uid > after), key=lambda m: int(m["user"]["id"])
        )
        return _json_response(members[:limit])

    async def _get_member(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        member = self._guild(request).members.get(_int(request.match_info["user_id"]))
        if member is None:
            raise DiscordError(10007)
        return _json_response(member)

    # -------------------------------------------------------------------------------------- messages

    def _new_message(self, channel_id: int, author: Mapping[str, Any], *, content: str) -> dict[str, Any]:
        return {
            "id": str(p.snowflake()),
            "channel_id": str(channel_id),
            "type": 0,
            "content": content,
            "author": dict(author),
            "attachments": [],
            "embeds": [],
            "components": [],
            "mentions": [],
            "mention_roles": [],
            "mention_everyone": False,
            "pinned": False,
            "tts": False,
            "timestamp": p.iso_now(),
            "edited_timestamp": None,
            "flags": 0,
        }

    def _attachments_from(
        self, channel_id: int, meta: list[Mapping[str, Any]], files: list[RecordedFile]
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        by_index = {str(m.get("id")): m for m in meta}
        for index, f in enumerate(files):
            match = re.fullmatch(r"files?\[(\d+)\]", f.field)
            key = match.group(1) if match else str(index)
            info = by_index.get(key, {})
            filename = str(info.get("filename") or f.filename)
            out.append(
                self._store_attachment(
                    filename,
                    f.data,
                    f.content_type,
                    channel_id=channel_id,
                    description=info.get("description"),
                )
            )
        return out

    def _mentions(
        self,
        content: str,
        allowed: Mapping[str, Any] | None,
        replied_author: Mapping[str, Any] | None,
        channel_id: int,
    ) -> tuple[list[dict[str, Any]], list[str], bool]:
        if allowed is None:
            parse, users_ok, roles_ok, replied = {"users", "roles", "everyone"}, set(), set(), True
        else:
            parse = set(allowed.get("parse") or [])
            users_ok = {str(u) for u in allowed.get("users") or []}
            roles_ok = {str(r) for r in allowed.get("roles") or []}
            replied = bool(allowed.get("replied_user", False))
        mentioned: list[dict[str, Any]] = []
        seen: set[str] = set()
        for uid in re.findall(r"<@!?(\d+)>", content):
            if uid not in seen and ("users" in parse or uid in users_ok):
                seen.add(uid)
                mentioned.append(self._user(int(uid)))
        if replied_author is not None and replied and str(replied_author["id"]) not in seen:
            mentioned.append(dict(replied_author))
        roles = [
            r for r in dict.fromkeys(re.findall(r"<@&(\d+)>", content)) if "roles" in parse or r in roles_ok
        ]
        everyone = "everyone" in parse and ("@everyone" in content or "@here" in content)
        return mentioned, roles, everyone

    def _build_message(
        self,
        channel_id: int,
        payload: Mapping[str, Any],
        files: list[RecordedFile],
        *,
        allow_ephemeral: bool = False,
    ) -> dict[str, Any]:
        content = payload.get("content")
        content = "" if content is None else str(content)
        if len(content) > 2000:
            raise form_error("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
        embeds = list(payload.get("embeds") or [])
        if len(embeds) > 10:
            raise form_error("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        components = list(payload.get("components") or [])
        flags = int(payload.get("flags") or 0)
        if len(components) > 5 and not flags & FLAG_IS_COMPONENTS_V2:
            raise form_error("components", "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
        kept_attachments = [a for a in payload.get("attachments") or [] if "url" in a]
        has_body = (
            content or embeds or files or components or payload.get("sticker_ids") or payload.get("poll")
        )
        if not has_body and not kept_attachments:
            raise DiscordError(50006)
        allowed_flags = FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS | FLAG_IS_COMPONENTS_V2
        if allow_ephemeral:
            allowed_flags |= FLAG_EPHEMERAL
        msg = self._new_message(channel_id, self.bot_user, content=content)
        msg["embeds"] = [_normalise_embed(e) for e in embeds]
        msg["components"] = components
        msg["flags"] = flags & allowed_flags
        msg["tts"] = bool(payload.get("tts", False))
        msg["attachments"] = self._attachments_from(channel_id, list(payload.get("attachments") or []), files)
        reference = payload.get("message_reference")
        replied_author = None
        if reference:
            ref_id = _int(reference.get("message_id", 0))
            ref_channel = _int(reference.get("channel_id") or channel_id)
            target = self._messages_by_id.get(ref_id)
            if target is None or target.deleted or target.channel_id != ref_channel:
                if reference.get("fail_if_not_exists", True):
                    raise form_error(
                        "message_reference",
                        "MESSAGE_REFERENCE_UNKNOWN_MESSAGE",
                        "Unknown message",
                    )
            else:
                channel = self.channels.get(ref_channel) or {}
                ref: dict[str, Any] = {"type": 0, "message_id": str(ref_id), "channel_id": str(ref_channel)}
                if channel.get("guild_id"):
                    ref["guild_id"] = channel["guild_id"]
                msg["message_reference"] = ref
                msg["referenced_message"] = {
                    k: v for k, v in target.message.items() if k != "referenced_message"
                }
                msg["type"] = 19
                replied_author = target.message["author"]
        msg["mentions"], msg["mention_roles"], msg["mention_everyone"] = self._mentions(
            content, payload.get("allowed_mentions"), replied_author, channel_id
        )
        return msg

    def _apply_edit(
        self,
        stored: MessageRecord,
        payload: Mapping[str, Any],
        files: list[RecordedFile],
        *,
        via: str,
        record_edit: bool = True,
    ) -> None:
        msg = stored.message
        if "content" in payload:
            content = "" if payload["content"] is None else str(payload["content"])
            if len(content) > 2000:
                raise form_error("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
            msg["content"] = content
        if "embeds" in payload:
            msg["embeds"] = [_normalise_embed(e) for e in payload["embeds"] or []]
        if "components" in payload:
            msg["components"] = list(payload["components"] or [])
        if "flags" in payload and payload["flags"] is not None:
            keep = int(msg.get("flags") or 0) & ~FLAG_SUPPRESS_EMBEDS
            msg["flags"] = keep | (int(payload["flags"]) & FLAG_SUPPRESS_EMBEDS)
        new_attachments = self._attachments_from(
            stored.channel_id, list(payload.get("attachments") or []), files
        )
        if "attachments" in payload:
            keep_ids = {
                str(a.get("id")) for a in payload["attachments"] or [] if "url" in a or "filename" not in a
            }
            msg["attachments"] = [a for a in msg.get("attachments", []) if str(a["id"]) in keep_ids]
        msg["attachments"] = list(msg.get("attachments", [])) + new_attachments
        if "content" in payload or "allowed_mentions" in payload:
            replied = (msg.get("referenced_message") or {}).get("author")
            msg["mentions"], msg["mention_roles"], msg["mention_everyone"] = self._mentions(
                msg["content"], payload.get("allowed_mentions"), replied, stored.channel_id
            )
        if not (msg["content"] or msg["embeds"] or msg["components"] or msg["attachments"]):
            raise DiscordError(50006)
        msg["edited_timestamp"] = p.iso_now()
        stored.files.extend(files)
        edit = EditRecord(stored.id, stored.channel_id, dict(payload), files, self._elapsed(), via)
        if record_edit:
            stored.edits.append(edit)
            self.edits.append(edit)
        if not stored.ephemeral:
            self._announce_message("MESSAGE_UPDATE", msg)

    def _record_message(
        self,
        kind: str,
        msg: dict[str, Any],
        files: list[RecordedFile],
        payload: Mapping[str, Any],
        *,
        interaction: InteractionRecord | None = None,
        dispatch: bool = True,
    ) -> MessageRecord:
        record = MessageRecord(
            kind=kind,
            message=msg,
            files=list(files),
            at=self._elapsed(),
            payload=dict(payload),
            interaction_id=interaction.id if interaction else None,
        )
        self.messages.append(record)
        self._messages_by_id[record.id] = record
        channel = self.channels.get(record.channel_id)
        if channel is not None:
            channel["last_message_id"] = msg["id"]
        if dispatch:
            self._announce_message("MESSAGE_CREATE", msg)
        self._notify()
        return record

    def _delete(self, stored: MessageRecord) -> None:
        stored.deleted = True
        self.deletions.append((stored.id, stored.channel_id, self._elapsed()))
        data: dict[str, Any] = {"id": str(stored.id), "channel_id": str(stored.channel_id)}
        guild_id = (self.channels.get(stored.channel_id) or {}).get("guild_id")
        if guild_id:
            data["guild_id"] = guild_id
        if not stored.ephemeral:
            self._announce_by_channel("MESSAGE_DELETE", data, stored.channel_id)

    def _announce_message(self, event: str, msg: dict[str, Any]) -> None:
        if not self.dispatch_message_events:
            return
        channel = self.channels.get(int(msg["channel_id"])) or {}
        data = dict(msg)
        if channel.get("guild_id"):
            data["guild_id"] = channel["guild_id"]
            member = self.guilds[int(channel["guild_id"])].members.get(int(msg["author"]["id"]))
            if member is not None:
                data["member"] = {k: v for k, v in member.items() if k != "user"}
        self._announce_by_channel(event, data, int(msg["channel_id"]))

    def _announce_by_channel(self, event: str, data: dict[str, Any], channel_id: int) -> None:
        channel = self.channels.get(channel_id) or {}
        intent = INTENT_GUILD_MESSAGES if channel.get("guild_id") else INTENT_DIRECT_MESSAGES
        self._announce(intent, event, data)

    # ------------------------------------------------------------------------------------ attachments

    async def _serve_attachment(self, request: web.Request) -> web.StreamResponse:
        stored = self._attachments.get(_int(request.match_info["attachment_id"]))
        if stored is None or stored.filename != request.match_info["filename"]:
            return web.Response(status=404, text="Not Found")
        self.attachment_downloads += 1
        return web.Response(body=stored.data, headers={"Content-Type": stored.content_type})

    # ---------------------------------------------------------------------------------- control API

    def snapshot(self, include_bytes: bool = False) -> dict[str, Any]:
        """Everything recorded, as JSON-able data (what ``GET /_control/state`` returns)."""
        return {
            "url": self.url,
            "api_url": self.api_url,
            "gateway_url": self.gateway_url,
            "token": self.token,
            "application_id": str(self.application_id),
            "bot_user": self.bot_user,
            "defaults": self.defaults(),
            "guilds": [
                {**g.data, "channel_ids": [str(c) for c in g.channel_ids], "upload_limit": g.upload_limit}
                for g in self.guilds.values()
            ],
            "sessions": [s.to_json(self.started_at) for s in self.sessions.values()],
            "connected_sessions": len(self.connected_sessions),
            "identify_count": self.identify_count,
            "resume_count": self.resume_count,
            "interactions": [i.to_json(self.started_at) for i in self.interactions.values()],
            "callbacks": [c.to_json(include_bytes) for c in self.callbacks],
            "followups": [f.to_json(include_bytes) for f in self.followups],
            "messages": [m.to_json(include_bytes) for m in self.messages],
            "edits": [e.to_json(include_bytes) for e in self.edits],
            "deletions": [
                {"message_id": str(m), "channel_id": str(c), "at": t} for m, c, t in self.deletions
            ],
            "command_puts": [c.to_json() for c in self.command_puts],
            "commands": self.registered_commands(),
            "invalid_requests": self.invalid_requests,
            "requests": [
                {
                    "method": r.method,
                    "path": r.path,
                    "status": r.status,
                    "at": r.at,
                    "error_code": r.error_code,
                }
                for r in self.requests
            ],
            "unhandled": [{"method": r.method, "path": r.path, "body": r.body} for r in self.unhandled],
        }

    def _counts(self) -> dict[str, int]:
        return {
            "callbacks": len(self.callbacks),
            "followups": len(self.followups),
            "messages": len(self.messages),
            "channel_messages": sum(1 for m in self.messages if m.kind == "channel"),
            "edits": len(self.edits),
            "deletions": len(self.deletions),
            "identifies": self.identify_count,
            "resumes": self.resume_count,
            "ready_sessions": len(self.connected_sessions),
            "command_puts": len(self.command_puts),
            "requests": len(self.requests),
            "interactions": len(self.interactions),
        }

    async def _control_state(self, request: web.Request) -> web.StreamResponse:
        include = request.query.get("bytes", "").lower() in ("1", "true")
        return _json_response(self.snapshot(include))

    async def _control_wait(self, request: web.Request) -> web.StreamResponse:
        timeout = float(request.query.get("timeout", "10"))
        wanted = {k: int(v) for k, v in request.query.items() if k not in ("timeout", "bytes")}
        unknown = set(wanted) - set(self._counts())
        if unknown:
            return _json_response(
                {"error": f"unknown counters {sorted(unknown)}", "known": sorted(self._counts())}, 400
            )

        def met() -> bool:
            counts = self._counts()
            return all(counts[k] >= v for k, v in wanted.items())

        try:
            await self.wait_for(met, timeout, f"counters {wanted}")
            status = 200
        except TimeoutError:
            status = 408
        return _json_response({"counts": self._counts(), "state": self.snapshot()}, status)

    async def _control_interactions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        wait = 0.0
        if "factory" in body:
            factory: dict[str, Callable[..., dict[str, Any]]] = {
                "slash_command": p.slash_command,
                "button_click": p.button_click,
                "modal_submit": p.modal_submit,
            }
            payload = factory[body["factory"]](self, **body.get("kwargs", {}))
            wait = float(body.get("wait_for_session", 0))
        elif "payload" in body:
            payload = body["payload"]
            wait = float(body.get("wait_for_session", 0))
        else:
            payload = body
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await self.wait_for_ready(wait)
        record = await self.dispatch_interaction(payload)
        return _json_response(
            {
                "id": str(record.id),
                "token": record.token,
                "dispatched_to": len(record.delivered_to),
                "payload": payload,
            }
        )

    async def _control_dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        count = await self.dispatch(body["t"], body.get("d") or {})
        return _json_response({"dispatched_to": count})

    async def _control_attachments(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        attachment = self.add_attachment(
            body["filename"],
            base64.b64decode(body["data_b64"]),
            body.get("content_type"),
            width=body.get("width"),
            height=body.get("height"),
            channel_id=_int(body["channel_id"]) if body.get("channel_id") else None,
            ephemeral=bool(body.get("ephemeral", True)),
        )
        return _json_response(attachment)

    async def _control_config(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        for cid, code in (body.get("refuse") or {}).items():
            self.refuse(_int(cid), int(code))
        for cid in body.get("unrefuse") or []:
            self.unrefuse(_int(cid))
        for uid in body.get("refuse_dm") or []:
            self.refuse_dm(_int(uid))
        for uid in body.get("unrefuse_dm") or []:
            self.unrefuse_dm(_int(uid))
        for gid, limit in (body.get("upload_limit") or {}).items():
            self.set_upload_limit(_int(gid), int(limit))
        for token in body.get("expire_tokens") or []:
            self.expire_token(str(token))
        for iid in body.get("expire_interactions") or []:
            self.expire_interaction(_int(iid))
        for name, rule in (body.get("rate_limits") or {}).items():
            self.set_rate_limit(
                name, int(rule["limit"]), float(rule["per"]), enforce=bool(rule.get("enforce", True))
            )
        for inj in body.get("inject_errors") or []:
            self.inject_error(
                inj["path_contains"],
                method=inj.get("method"),
                status=int(inj.get("status", 500)),
                code=int(inj.get("code", 0)),
                message=inj.get("message", "500: Internal Server Error"),
                times=int(inj.get("times", 1)),
                retry_after=inj.get("retry_after"),
            )
        for key in ("token_lifetime", "callback_timeout"):
            if key in body:
                setattr(self, key, None if body[key] is None else float(body[key]))
        for key in ("allow_resume", "dispatch_message_events", "enforce_permissions"):
            if key in body:
                setattr(self, key, bool(body[key]))
        if "heartbeat_interval" in body:
            self.heartbeat_interval = int(body["heartbeat_interval"])
        return _json_response({"ok": True})

    async def _control_model(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        ops: dict[str, Callable[..., Any]] = {
            "add_guild": self.add_guild,
            "add_channel": self.add_channel,
            "add_role": self.add_role,
            "add_member": self.add_member,
            "add_user": self.add_user,
            "set_overwrite": self.set_overwrite,
            "set_role_permissions": self.set_role_permissions,
            "add_message": self.add_message,
            "open_dm": self.open_dm,
        }
        op = ops.get(body.get("op", ""))
        if op is None:
            return _json_response({"error": f"unknown op, use one of {sorted(ops)}"}, 400)
        args = {k: _coerce_ids(k, v) for k, v in (body.get("args") or {}).items()}
        result = op(**args)
        if isinstance(result, MessageRecord):
            result = result.to_json()
        return _json_response({"result": result})

    async def _control_gateway(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        action = body.get("action")
        if action == "drop":
            await self.drop_connections(int(body.get("code", 4000)), abrupt=bool(body.get("abrupt", False)))
        elif action == "reconnect":
            await self.request_reconnect()
        elif action == "invalidate":
            await self.invalidate_sessions(bool(body.get("resumable", False)))
        else:
            return _json_response({"error": "action must be drop, reconnect or invalidate"}, 400)
        return _json_response({"ok": True})

    async def _control_reset(self, request: web.Request) -> web.StreamResponse:
        self.reset_records()
        return _json_response({"ok": True})


class _RateLimited(DiscordError):
    def __init__(self, retry_after: float, headers: Mapping[str, str]) -> None:
        super().__init__(0, "You are being rate limited.", status=429, headers=headers)
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "retry_after": self.retry_after, "global": False, "code": 0}


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise form_error("id", "NUMBER_TYPE_COERCE", f"Value {value!r} is not snowflake.") from None


def _coerce_ids(key: str, value: Any) -> Any:
    """Control API: snowflakes may come as strings (the state JSON uses strings); model methods want ints."""
    if key.endswith("_id") and isinstance(value, str) and value.isdigit():
        return int(value)
    if key == "roles" and isinstance(value, list):
        return [int(v) for v in value]
    return value


def _normalise_embed(embed: Mapping[str, Any]) -> dict[str, Any]:
    """The embed as Discord stores it; Discord's length limits refused as Discord refuses them."""
    for field, limit in (("title", 256), ("description", 4096)):
        if len(str(embed.get(field) or "")) > limit:
            raise form_error(
                f"embeds.0.{field}", "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length."
            )
    fields = list(embed.get("fields") or [])
    if len(fields) > 25 or any(len(str(f.get("value", ""))) > 1024 for f in fields):
        raise form_error("embeds.0.fields", "BASE_TYPE_MAX_LENGTH", "Must be 1024 or fewer in length.")
    total = sum(len(str(embed.get(k) or "")) for k in ("title", "description"))
    total += sum(len(str(f.get("name", ""))) + len(str(f.get("value", ""))) for f in fields)
    total += len(str((embed.get("footer") or {}).get("text", ""))) + len(
        str((embed.get("author") or {}).get("name", ""))
    )
    if total > 6000:
        raise form_error("embeds", "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")
    out = dict(embed)
    out.setdefault("type", "rich")
    out.setdefault("content_scan_version", 0)
    return out


# ---------------------------------------------------------------------------------- running a client


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


# ----------------------------------------------------------------------- control client / subprocess


class ControlClient:
    """Async client for the control API of a fake running in another process (or this one)."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    async def _call(
        self, method: str, path: str, body: Any = None, params: Mapping[str, Any] | None = None
    ) -> Any:
        client_timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with (
            aiohttp.ClientSession(timeout=client_timeout) as session,
            session.request(
                method,
                f"{self.url}/_control/{path}",
                json=body,
                params={k: str(v) for k, v in (params or {}).items()},
            ) as response,
        ):
            data = await response.json(content_type=None)
            if response.status == 408:
                raise TimeoutError(f"fake Discord: wait timed out, counts {data.get('counts')}")
            if response.status >= 400:
                raise RuntimeError(f"control API {method} {path}: {response.status} {data}")
            return data

    async def state(self, include_bytes: bool = False) -> dict[str, Any]:
        """The snapshot (:meth:`FakeDiscord.snapshot`)."""
        data: dict[str, Any] = await self._call("GET", "state", params={"bytes": int(include_bytes)})
        return data

    async def wait(self, timeout: float = 10.0, **counts: int) -> dict[str, Any]:  # noqa: ASYNC109
        """Wait until counters reach the given minimums (callbacks, followups, messages, channel_messages,
        edits, deletions, identifies, resumes, ready_sessions, command_puts, requests, interactions);
        returns ``{"counts", "state"}``; raises TimeoutError."""
        data: dict[str, Any] = await self._call("GET", "wait", params={"timeout": timeout, **counts})
        return data

    async def dispatch_interaction(
        self, payload: Mapping[str, Any], *, wait_for_session: float = 0.0
    ) -> dict[str, Any]:
        """Dispatch a payload; returns ``{"id", "token", "dispatched_to", "payload"}``."""
        data: dict[str, Any] = await self._call(
            "POST", "interactions", {"payload": payload, "wait_for_session": wait_for_session}
        )
        return data

    async def build_and_dispatch(
        self, factory: str, *, wait_for_session: float = 0.0, **kwargs: Any
    ) -> dict[str, Any]:
        """Have the fake build the payload with ``payloads.<factory>(fake, **kwargs)`` and dispatch it."""
        data: dict[str, Any] = await self._call(
            "POST",
            "interactions",
            {"factory": factory, "kwargs": kwargs, "wait_for_session": wait_for_session},
        )
        return data

    async def add_attachment(
        self, filename: str, data: bytes, content_type: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        body = {
            "filename": filename,
            "data_b64": base64.b64encode(data).decode(),
            "content_type": content_type,
        }
        result: dict[str, Any] = await self._call("POST", "attachments", {**body, **kwargs})
        return result

    async def config(self, **settings: Any) -> None:
        """``refuse={cid: code}``, ``unrefuse=[cid]``, ``refuse_dm=[uid]``, ``unrefuse_dm=[uid]``,
        ``upload_limit={gid: n}``, ``expire_tokens=[token]``, ``expire_interactions=[id]``,
        ``rate_limits={name: {"limit", "per", "enforce"}}``, ``inject_errors=[{"path_contains", "method",
        "status", "code", "message", "times", "retry_after"}]``, ``token_lifetime``, ``callback_timeout``,
        ``allow_resume``, ``dispatch_message_events``, ``enforce_permissions``, ``heartbeat_interval``."""
        await self._call("POST", "config", settings)

    async def model(self, op: str, **args: Any) -> Any:
        """Call a model method (add_guild, add_channel, add_role, add_member, add_user, set_overwrite,
        set_role_permissions, add_message, open_dm) with keyword arguments."""
        return (await self._call("POST", "model", {"op": op, "args": args}))["result"]

    async def gateway(self, action: str, **kwargs: Any) -> None:
        """``drop`` (``code``, ``abrupt``), ``reconnect`` (op 7) or ``invalidate`` (``resumable``)."""
        await self._call("POST", "gateway", {"action": action, **kwargs})

    async def dispatch(self, event: str, data: Mapping[str, Any]) -> int:
        return int((await self._call("POST", "dispatch", {"t": event, "d": data}))["dispatched_to"])

    async def reset(self) -> None:
        await self._call("POST", "reset", {})


PROJECT_ROOT = Path(__file__).resolve().parents[2]


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
    ) -> None:
        self.port = port
        self.token = token
        self.extra_args = list(extra_args)
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


# ------------------------------------------------------------------------------------------------ CLI


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeDiscord(
        args.token,
        host=args.host,
        port=args.port,
        allowed_intents=args.allowed_intents,
        callback_timeout=None if args.callback_timeout <= 0 else args.callback_timeout,
        token_lifetime=args.token_lifetime,
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
    }
    print(json.dumps(info), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await fake.stop()


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
    args = parser.parse_args(argv)
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
