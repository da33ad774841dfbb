"""What the fake Discord records and answers with: constants, error answers, record dataclasses."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

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
    40094: (400, "This interaction has hit the maximum number of follow up messages"),
    50035: (400, "Invalid Form Body"),
    50109: (400, "The request body contains invalid JSON."),
    160002: (403, "Cannot reply without permission to read message history"),
}


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
    shard_id: int | None = None  # the shard its guild belongs to (DMs: 0), under FakeDiscord.shard_count
    delivered_shards: list[int | None] = dataclasses.field(default_factory=list)  # per delivered_to entry
    callback_attempts: int = 0  # every POST .../callback for it, accepted or refused (40060, 10062)

    @property
    def guild_id(self) -> int | None:
        gid = self.payload.get("guild_id")
        return int(gid) if gid is not None else None

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
            "shard_id": self.shard_id,
            "delivered_shards": self.delivered_shards,
            "callback_attempts": self.callback_attempts,
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
        """What the member reads: the content, or a Components V2 message's text displays."""
        if int(self.message.get("flags") or 0) & FLAG_IS_COMPONENTS_V2:
            from tests.fakes.discord_server._components import components_text

            return components_text(list(self.message.get("components") or []))
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


def _json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    # discord.py only parses JSON when Content-Type is exactly "application/json" (no charset).
    hdrs = {"Content-Type": "application/json"}
    hdrs.update(headers or {})
    return web.Response(status=status, body=json.dumps(data).encode(), headers=hdrs)


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
