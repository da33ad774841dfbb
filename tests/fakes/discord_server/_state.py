"""The fake Discord's world (users, guilds, channels, roles, members, DMs, permissions) and its
behaviour switches (refusals, expired tokens, rate limits, injected errors)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tests.fakes import payloads as p
from tests.fakes.discord_server._base import FakeBase
from tests.fakes.discord_server._records import (
    INTENT_GUILD_MEMBERS,
    INTENT_GUILDS,
    InjectedDisconnect,
    InjectedError,
    MessageRecord,
    RateLimitRule,
    _Guild,
)


class StateMixin(FakeBase):
    """The world model and behaviour switches of :class:`FakeDiscord`."""

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

    def guild_id_on_shard(self, shard_id: int, shard_count: int | None = None) -> int:
        """A new snowflake whose guild would live on ``shard_id`` of ``shard_count`` (default: the fake's):
        its timestamp part moved forward by under ``shard_count`` ms."""
        count = shard_count or self.shard_count
        if not 0 <= shard_id < count:
            raise ValueError(f"shard {shard_id} does not exist among {count}")
        raw = p.snowflake()
        stamp = raw >> 22
        stamp += (shard_id - stamp) % count
        return (stamp << 22) | (raw & ((1 << 22) - 1))

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
        media: bool = False,
    ) -> dict[str, Any]:
        """Add a forum channel (type 15), or with `media` a media channel (type 16), with tags;
        `require_tag` sets Discord's REQUIRE_TAG flag."""
        kind = p.GUILD_MEDIA if media else p.GUILD_FORUM
        channel = self.add_channel(guild_id, name, channel_type=kind, _announce=False)
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
