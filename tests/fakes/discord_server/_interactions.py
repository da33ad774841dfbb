"""Interactions on the fake Discord: dispatching INTERACTION_CREATE, callbacks, webhook followups/edits."""

from __future__ import annotations

import collections
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from tests.fakes import payloads as p
from tests.fakes.discord_server._base import FakeBase
from tests.fakes.discord_server._records import (
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    CallbackRecord,
    DiscordError,
    FollowupRecord,
    InteractionRecord,
    MessageRecord,
    RecordedFile,
    RecordedRequest,
    _int,
    _json_response,
    form_error,
    now,
)

# Discord's cap on followups of an interaction of an app only the member installed (where the server has not
# added it): https://discord.com/developers/docs/interactions/receiving-and-responding#followup-messages
MAX_USER_INSTALL_FOLLOWUPS = 5


class InteractionsMixin(FakeBase):
    """Interactions of :class:`FakeDiscord`: dispatch, callbacks, webhooks."""

    async def dispatch_interaction(self, payload: Mapping[str, Any]) -> InteractionRecord:
        """Send INTERACTION_CREATE to every connected session of the guild's shard (DMs: shard 0; an
        unsharded session gets everything); the dispatch time starts the 3 s clock."""
        data = dict(payload)
        iid = int(data["id"])
        record = InteractionRecord(
            id=iid, token=str(data["token"]), type=int(data["type"]), payload=data, dispatched_at=now()
        )
        record.shard_id = self.shard_of(record.guild_id)
        self.interactions[iid] = record
        self._interactions_by_token[record.token] = record
        for session in list(self.sessions.values()):
            if session.connected and session.ready and session.serves(record.guild_id):
                record.delivered_to.append(session.session_id)
                record.delivered_shards.append(session.shard_id)
                await self._send_dispatch(session, "INTERACTION_CREATE", data)
        self._notify()
        return record

    def shard_report(self) -> dict[int, dict[str, Any]]:
        """Per shard (under ``shard_count``): its sessions and what happened to its guilds' interactions.

        ``{shard_id: {"sessions": [session ids], "connected": n, "interactions": n, "delivered": n,
        "answered": n (accepted callbacks), "callback_attempts": n, "followups": n,
        "channel_messages": n (bot posts in channels of its guilds, DMs in shard 0)}}``.
        """
        report: dict[int, dict[str, Any]] = {
            shard: {
                "sessions": [s.session_id for s in self.sessions_of_shard(shard)],
                "connected": sum(1 for s in self.sessions_of_shard(shard) if s.connected),
                "interactions": 0,
                "delivered": 0,
                "answered": 0,
                "callback_attempts": 0,
                "followups": 0,
                "channel_messages": 0,
            }
            for shard in range(self.shard_count)
        }
        for record in self.interactions.values():
            entry = report[record.shard_id or 0]
            entry["interactions"] += 1
            entry["delivered"] += bool(record.delivered_to)
            entry["callback_attempts"] += record.callback_attempts
        for callback in self.callbacks:
            report[self.interactions[callback.interaction_id].shard_id or 0]["answered"] += 1
        for followup in self.followups:
            report[self.interactions[followup.interaction_id].shard_id or 0]["followups"] += 1
        for message in self.messages:
            if message.kind == "channel":
                guild = (self.channels.get(message.channel_id) or {}).get("guild_id")
                report[self.shard_of(int(guild) if guild else None)]["channel_messages"] += 1
        return report

    def interaction_problems(self) -> list[str]:
        """Every interaction not delivered to exactly its shard, or not answered exactly once (one
        accepted callback and no other attempt): one line each, empty when all is well."""
        problems: list[str] = []
        accepted = collections.Counter(c.interaction_id for c in self.callbacks)
        for record in self.interactions.values():
            where = f"interaction {record.id} (guild {record.guild_id}, shard {record.shard_id})"
            if not record.delivered_to:
                problems.append(f"{where}: delivered to no session")
            wrong = [s for s in record.delivered_shards if s is not None and s != record.shard_id]
            if wrong:
                problems.append(f"{where}: delivered to shard(s) {sorted(set(wrong))}")
            if accepted[record.id] != 1 or record.callback_attempts != 1:
                problems.append(
                    f"{where}: {accepted[record.id]} accepted callback(s) of {record.callback_attempts}"
                )
        return problems

    def _interaction_for_callback(self, request: web.Request) -> InteractionRecord:
        record = self.interactions.get(_int(request.match_info["interaction_id"]))
        if record is None or record.token != request.match_info["token"]:
            raise DiscordError(10062)
        record.callback_attempts += 1
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
        owners = record.payload.get("authorizing_integration_owners") or {}
        if not replaced and set(owners) == {"1"}:
            # An app only the member installed, used where no server added it: 5 followups at most.
            made = sum(1 for f in self.followups if f.interaction_id == record.id and not f.replaced_original)
            if made >= MAX_USER_INSTALL_FOLLOWUPS:
                raise DiscordError(40094)
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
