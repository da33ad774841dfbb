"""Channel routes of the fake Discord (messages, forum threads, typing) and how a message is built,
edited, recorded, deleted and announced on the gateway."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from tests.fakes import payloads as p
from tests.fakes.discord_server._base import FakeBase
from tests.fakes.discord_server._components import classic_components, v2_text, validate_components_v2
from tests.fakes.discord_server._records import (
    FLAG_EPHEMERAL,
    FLAG_IS_COMPONENTS_V2,
    FLAG_SUPPRESS_EMBEDS,
    FLAG_SUPPRESS_NOTIFICATIONS,
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MESSAGES,
    INTENT_GUILDS,
    DiscordError,
    EditRecord,
    InteractionRecord,
    MessageRecord,
    RecordedFile,
    RecordedRequest,
    _int,
    _json_response,
    form_error,
)


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


class MessagesMixin(FakeBase):
    """Channel routes and message bookkeeping of :class:`FakeDiscord`."""

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
        if forum["type"] not in (p.GUILD_FORUM, p.GUILD_MEDIA):
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
        if flags & FLAG_IS_COMPONENTS_V2:
            if content or embeds or payload.get("poll") or payload.get("sticker_ids"):
                raise form_error(
                    "content", "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2", "Content not allowed."
                )
            if not components:
                raise DiscordError(50006)
            validate_components_v2(components, {f.filename for f in files} | self._named_files(payload))
        else:
            classic_components(components)
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
        said = v2_text(components) if flags & FLAG_IS_COMPONENTS_V2 else content
        msg["mentions"], msg["mention_roles"], msg["mention_everyone"] = self._mentions(
            said, payload.get("allowed_mentions"), replied_author, channel_id
        )
        return msg

    @staticmethod
    def _named_files(payload: Mapping[str, Any]) -> set[str]:
        return {str(a["filename"]) for a in payload.get("attachments") or [] if a.get("filename")}

    def _apply_edit(
        self,
        stored: MessageRecord,
        payload: Mapping[str, Any],
        files: list[RecordedFile],
        *,
        via: str,
        record_edit: bool = True,
    ) -> None:
        before = copy.deepcopy(stored.message)
        try:
            self._edit_fields(stored, payload, files)
        except DiscordError:
            stored.message.clear()
            stored.message.update(before)  # a refused edit changes nothing
            raise
        msg = stored.message
        msg["edited_timestamp"] = p.iso_now()
        stored.files.extend(files)
        edit = EditRecord(stored.id, stored.channel_id, dict(payload), files, self._elapsed(), via)
        if record_edit:
            stored.edits.append(edit)
            self.edits.append(edit)
        if not stored.ephemeral:
            self._announce_message("MESSAGE_UPDATE", msg)

    def _edit_fields(
        self, stored: MessageRecord, payload: Mapping[str, Any], files: list[RecordedFile]
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
            # The V2 flag may be set by an edit (never taken back); SUPPRESS_EMBEDS both ways.
            msg["flags"] = keep | (int(payload["flags"]) & (FLAG_SUPPRESS_EMBEDS | FLAG_IS_COMPONENTS_V2))
        new_attachments = self._attachments_from(
            stored.channel_id, list(payload.get("attachments") or []), files
        )
        if "attachments" in payload:
            keep_ids = {
                str(a.get("id")) for a in payload["attachments"] or [] if "url" in a or "filename" not in a
            }
            msg["attachments"] = [a for a in msg.get("attachments", []) if str(a["id"]) in keep_ids]
        msg["attachments"] = list(msg.get("attachments", [])) + new_attachments
        is_v2 = bool(int(msg.get("flags") or 0) & FLAG_IS_COMPONENTS_V2)
        if is_v2:
            if msg["content"] or msg["embeds"]:
                raise form_error(
                    "content", "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2", "Content not allowed."
                )
            # attachment:// names the message's files: those kept and those uploaded now.
            validate_components_v2(msg["components"], {str(a["filename"]) for a in msg["attachments"]})
        else:
            classic_components(msg["components"])
        if "content" in payload or "allowed_mentions" in payload or (is_v2 and "components" in payload):
            replied = (msg.get("referenced_message") or {}).get("author")
            said = v2_text(msg["components"]) if is_v2 else msg["content"]
            msg["mentions"], msg["mention_roles"], msg["mention_everyone"] = self._mentions(
                said, payload.get("allowed_mentions"), replied, stored.channel_id
            )
        if not (msg["content"] or msg["embeds"] or msg["components"] or msg["attachments"]):
            raise DiscordError(50006)

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
