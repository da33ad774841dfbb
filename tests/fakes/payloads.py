"""Factories for Discord API payloads (plain dicts, shaped exactly like Discord sends them).

Used by the fake Discord server (``tests.fakes.discord_server``) for its model data and by tests to build
the INTERACTION_CREATE payloads they dispatch::

    from tests.fakes import payloads as p

    image = fake.add_attachment("cat.png", png_bytes)               # served by the fake on 127.0.0.1
    inter = p.slash_command(fake, name="animate", options={"image": image, "prompt": "a cat waves"})
    record = await fake.dispatch_interaction(inter)

    click = p.button_click(fake, "job:42:cancel", message=fake.messages[-1].message)
    await fake.dispatch_interaction(click)

Every interaction factory takes, as its first argument, where its ids come from:

* a :class:`~tests.fakes.discord_server.FakeDiscord` — application id, default guild/channel/member come
  from it, permissions are computed from its roles and overwrites, the invoking member is added to the
  fake's guild if missing, and a command registered on the fake (by the bot's ``tree.sync``) lends its id
  and, for guild commands, ``data.guild_id`` (discord.py needs that to find a guild-only command);
* a mapping — the ``"defaults"`` object of the control API's ``GET /_control/state`` (or the whole state),
  for tests driving a fake in another process;
* ``None`` — the module constants below, which are also the fake's own defaults, so payloads built
  without a fake match a fake started with default settings.

Snowflakes are realistic (timestamp-based and increasing); tokens look like Discord's interaction tokens.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import os
import secrets
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fakes.discord_server import FakeDiscord

DISCORD_EPOCH_MS = 1_420_070_400_000

# Permission bits (https://discord.com/developers/docs/topics/permissions).
CREATE_INSTANT_INVITE = 1 << 0
KICK_MEMBERS = 1 << 1
BAN_MEMBERS = 1 << 2
ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_AUDIT_LOG = 1 << 7
PRIORITY_SPEAKER = 1 << 8
STREAM = 1 << 9
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
SEND_TTS_MESSAGES = 1 << 12
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MENTION_EVERYONE = 1 << 17
USE_EXTERNAL_EMOJIS = 1 << 18
CONNECT = 1 << 20
SPEAK = 1 << 21
USE_VAD = 1 << 25
CHANGE_NICKNAME = 1 << 26
MANAGE_ROLES = 1 << 28
MANAGE_WEBHOOKS = 1 << 29
USE_APPLICATION_COMMANDS = 1 << 31
REQUEST_TO_SPEAK = 1 << 32
MANAGE_THREADS = 1 << 34
CREATE_PUBLIC_THREADS = 1 << 35
CREATE_PRIVATE_THREADS = 1 << 36
USE_EXTERNAL_STICKERS = 1 << 37
SEND_MESSAGES_IN_THREADS = 1 << 38
USE_EMBEDDED_ACTIVITIES = 1 << 39
MODERATE_MEMBERS = 1 << 40
SEND_VOICE_MESSAGES = 1 << 46
SEND_POLLS = 1 << 49
USE_EXTERNAL_APPS = 1 << 50
ALL_PERMISSIONS = (1 << 51) - 1

#: What @everyone gets in a freshly created server.
DEFAULT_EVERYONE_PERMISSIONS = (
    CREATE_INSTANT_INVITE
    | ADD_REACTIONS
    | STREAM
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | CONNECT
    | SPEAK
    | USE_VAD
    | CHANGE_NICKNAME
    | USE_APPLICATION_COMMANDS
    | REQUEST_TO_SPEAK
    | CREATE_PUBLIC_THREADS
    | CREATE_PRIVATE_THREADS
    | USE_EXTERNAL_STICKERS
    | SEND_MESSAGES_IN_THREADS
    | USE_EMBEDDED_ACTIVITIES
    | SEND_VOICE_MESSAGES
    | SEND_POLLS
    | USE_EXTERNAL_APPS
)
#: The bot's managed role: View Channels, Send Messages, Embed Links, Attach Files, Read Message History.
DEFAULT_BOT_PERMISSIONS = 117_760

DEFAULT_UPLOAD_LIMIT = 10_485_760  # 10 MiB, Discord's attachment_size_limit for unboosted servers

# Fixed ids of the fake's default world (realistic 2024-2025 snowflakes).
DEFAULT_TOKEN = "MTI3NjQ4MzkyMDE1MzIyMTI0OA.GfAkeD.fake-discord-bot-token-for-tests-only"
DEFAULT_APPLICATION_ID = 1_276_483_920_153_221_248  # == the bot user's id, as for every modern app
DEFAULT_BOT_USER_ID = DEFAULT_APPLICATION_ID
DEFAULT_GUILD_ID = 1_201_133_704_468_807_680
DEFAULT_CHANNEL_ID = 1_201_133_705_081_176_114
DEFAULT_BOT_ROLE_ID = 1_276_484_305_953_542_216
DEFAULT_OWNER_ID = 1_101_596_372_331_487_282
DEFAULT_USER_ID = 1_143_850_174_982_443_079  # "alice", the default member who runs commands

# Interaction types and response types.
PING = 1
APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3
APPLICATION_COMMAND_AUTOCOMPLETE = 4
MODAL_SUBMIT = 5

# Application command option types.
OPTION_SUB_COMMAND = 1
OPTION_SUB_COMMAND_GROUP = 2
OPTION_STRING = 3
OPTION_INTEGER = 4
OPTION_BOOLEAN = 5
OPTION_USER = 6
OPTION_CHANNEL = 7
OPTION_ROLE = 8
OPTION_MENTIONABLE = 9
OPTION_NUMBER = 10
OPTION_ATTACHMENT = 11

# Channel types.
GUILD_TEXT = 0
PUBLIC_THREAD = 11
GUILD_FORUM = 15
GUILD_MEDIA = 16  # a media channel: a forum whose posts show their media first
# Channel flag: a forum post must carry a tag.
CHANNEL_FLAG_REQUIRE_TAG = 1 << 4
DM = 1
GUILD_VOICE = 2
GUILD_CATEGORY = 4


# --------------------------------------------------------------------------------------------- snowflakes


class SnowflakeGenerator:
    """Discord-style ids: ``(ms since 2015 << 22) | worker << 17 | process << 12 | increment``."""

    def __init__(self, worker: int = 1, process: int | None = None) -> None:
        self._worker = worker & 0x1F
        self._process = (os.getpid() if process is None else process) & 0x1F
        self._counter = itertools.count()
        self._last = 0
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
            value = (ms << 22) | (self._worker << 17) | (self._process << 12) | (next(self._counter) & 0xFFF)
            if value <= self._last:  # same millisecond with a wrapped counter, or a clock step back
                value = self._last + 1
            self._last = value
            return value


snowflake = SnowflakeGenerator()


def snowflake_time(value: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(((value >> 22) + DISCORD_EPOCH_MS) / 1000, tz=dt.UTC)


def iso_now() -> str:
    """A timestamp formatted like Discord's (``2025-01-31T12:34:56.789000+00:00``)."""
    return dt.datetime.now(dt.UTC).isoformat()


def new_interaction_token(interaction_id: int) -> str:
    """A token shaped like Discord's: base64 of ``interaction:<id>:<secret>``, about 200 characters."""
    raw = f"interaction:{interaction_id}:{secrets.token_urlsafe(96)}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# --------------------------------------------------------------------------------------- model payloads


def user_payload(
    user_id: int,
    username: str,
    *,
    bot: bool = False,
    global_name: str | None = None,
    avatar: str | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(user_id),
        "username": username,
        "discriminator": "0",
        "global_name": global_name if global_name is not None else (None if bot else username.title()),
        "avatar": avatar,
        "avatar_decoration_data": None,
        "banner": None,
        "accent_color": None,
        "public_flags": 0,
        "flags": 0,
        "primary_guild": None,
        "collectibles": None,
    }
    if bot:
        data["bot"] = True
    return data


def role_payload(
    role_id: int,
    name: str,
    *,
    permissions: int = 0,
    position: int = 0,
    color: int = 0,
    hoist: bool = False,
    managed: bool = False,
    mentionable: bool = False,
    bot_id: int | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(role_id),
        "name": name,
        "description": None,
        "permissions": str(permissions),
        "position": position,
        "color": color,
        "colors": {"primary_color": color, "secondary_color": None, "tertiary_color": None},
        "hoist": hoist,
        "managed": managed,
        "mentionable": mentionable,
        "icon": None,
        "unicode_emoji": None,
        "flags": 0,
    }
    if bot_id is not None:
        data["tags"] = {"bot_id": str(bot_id)}
    return data


def overwrite_payload(
    target_id: int, *, allow: int = 0, deny: int = 0, member: bool = False
) -> dict[str, Any]:
    """A channel permission overwrite (``type`` 0 = role, 1 = member)."""
    return {"id": str(target_id), "type": 1 if member else 0, "allow": str(allow), "deny": str(deny)}


def text_channel_payload(
    channel_id: int,
    guild_id: int,
    name: str,
    *,
    position: int = 0,
    topic: str | None = None,
    nsfw: bool = False,
    parent_id: int | None = None,
    permission_overwrites: Iterable[Mapping[str, Any]] = (),
    rate_limit_per_user: int = 0,
    channel_type: int = GUILD_TEXT,
) -> dict[str, Any]:
    return {
        "id": str(channel_id),
        "type": channel_type,
        "guild_id": str(guild_id),
        "name": name,
        "position": position,
        "flags": 0,
        "parent_id": str(parent_id) if parent_id is not None else None,
        "topic": topic,
        "nsfw": nsfw,
        "last_message_id": None,
        "rate_limit_per_user": rate_limit_per_user,
        "permission_overwrites": [dict(o) for o in permission_overwrites],
    }


def dm_channel_payload(channel_id: int, recipient: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(channel_id),
        "type": DM,
        "last_message_id": None,
        "flags": 0,
        "recipients": [dict(recipient)],
    }


def member_payload(
    user: Mapping[str, Any],
    *,
    roles: Iterable[int] = (),
    nick: str | None = None,
    joined_at: str | None = None,
    permissions: int | None = None,
) -> dict[str, Any]:
    """A guild member. ``permissions`` is only set in interaction payloads (their resolved permissions)."""
    data: dict[str, Any] = {
        "user": dict(user),
        "roles": [str(r) for r in roles],
        "nick": nick,
        "avatar": None,
        "banner": None,
        "joined_at": joined_at or iso_now(),
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "pending": False,
        "flags": 0,
        "communication_disabled_until": None,
        "unusual_dm_activity_until": None,
    }
    if permissions is not None:
        data["permissions"] = str(permissions)
    return data


def guild_payload(
    guild_id: int,
    name: str,
    *,
    owner_id: int,
    roles: Iterable[Mapping[str, Any]] = (),
    features: Iterable[str] = (),
    premium_tier: int = 0,
    preferred_locale: str = "en-US",
) -> dict[str, Any]:
    """A guild object as ``GET /guilds/{id}`` returns it (no channels/members; GUILD_CREATE adds those)."""
    return {
        "id": str(guild_id),
        "name": name,
        "icon": None,
        "splash": None,
        "discovery_splash": None,
        "banner": None,
        "description": None,
        "owner_id": str(owner_id),
        "region": "deprecated",
        "afk_channel_id": None,
        "afk_timeout": 300,
        "system_channel_id": None,
        "system_channel_flags": 0,
        "widget_enabled": False,
        "widget_channel_id": None,
        "verification_level": 1,
        "default_message_notifications": 1,
        "explicit_content_filter": 2,
        "mfa_level": 0,
        "nsfw_level": 0,
        "premium_tier": premium_tier,
        "premium_subscription_count": 0,
        "premium_progress_bar_enabled": False,
        "preferred_locale": preferred_locale,
        "rules_channel_id": None,
        "public_updates_channel_id": None,
        "safety_alerts_channel_id": None,
        "vanity_url_code": None,
        "max_members": 25_000_000,
        "max_presences": None,
        "max_video_channel_users": 25,
        "max_stage_video_channel_users": 50,
        "application_id": None,
        "features": list(features),
        "roles": [dict(r) for r in roles],
        "emojis": [],
        "stickers": [],
        "incidents_data": None,
        "inventory_settings": None,
        "hub_type": None,
        "latest_onboarding_question_id": None,
    }


def attachment_payload(
    attachment_id: int,
    filename: str,
    *,
    size: int,
    url: str,
    proxy_url: str | None = None,
    content_type: str | None = None,
    width: int | None = None,
    height: int | None = None,
    ephemeral: bool = False,
    description: str | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(attachment_id),
        "filename": filename,
        "size": size,
        "url": url,
        "proxy_url": proxy_url or url,
    }
    if content_type is not None:
        data["content_type"] = content_type
    if width is not None and height is not None:
        data["width"] = width
        data["height"] = height
        data["placeholder_version"] = 1
        data["placeholder"] = "3PcNDQJ4eIeQdnh3h3d3iHd4h4B4CIcA"
    if ephemeral:
        data["ephemeral"] = True
    if description is not None:
        data["description"] = description
    return data


# ------------------------------------------------------------------------------------ where ids come from


def _source_defaults(source: FakeDiscord | Mapping[str, Any] | None) -> dict[str, Any]:
    """The fake's defaults as a dict: application_id, guild_id, channel_id, user (a user object)."""
    if source is None:
        return {
            "application_id": DEFAULT_APPLICATION_ID,
            "guild_id": DEFAULT_GUILD_ID,
            "channel_id": DEFAULT_CHANNEL_ID,
            "user": user_payload(DEFAULT_USER_ID, "alice"),
            "bot_user_id": DEFAULT_BOT_USER_ID,
        }
    if isinstance(source, Mapping):
        data = source.get("defaults", source)
        return {
            "application_id": int(data["application_id"]),
            "guild_id": int(data["guild_id"]) if data.get("guild_id") else None,
            "channel_id": int(data["channel_id"]) if data.get("channel_id") else None,
            "user": dict(data["user"]),
            "bot_user_id": int(data.get("bot_user_id", data["application_id"])),
            "commands": data.get("commands", []),
            "channels": data.get("channels", {}),
        }
    return source.defaults()


def _perm_str(value: int | str | None, fallback: int) -> str:
    return str(fallback if value is None else int(value))


def _partial_guild(guild_id: int, locale: str) -> dict[str, Any]:
    return {"id": str(guild_id), "locale": locale, "features": []}


def _interaction_channel(
    source: FakeDiscord | Mapping[str, Any] | None,
    channel_id: int,
    guild_id: int | None,
    user: Mapping[str, Any],
    member_permissions: str,
) -> dict[str, Any]:
    """The partial channel object interactions carry (with the invoker's ``permissions`` in it)."""
    channel: dict[str, Any] | None = None
    if source is not None and not isinstance(source, Mapping):
        stored = source.channels.get(channel_id)
        channel = dict(stored) if stored is not None else None
    elif isinstance(source, Mapping):
        stored_map = source.get("defaults", source).get("channels", {})
        if str(channel_id) in stored_map:
            channel = dict(stored_map[str(channel_id)])
    if channel is None:
        if guild_id is None:
            channel = dm_channel_payload(channel_id, user)
        else:
            channel = text_channel_payload(channel_id, guild_id, "general")
    channel.pop("permission_overwrites", None)
    channel["permissions"] = member_permissions
    return channel


def _find_command(
    source: FakeDiscord | Mapping[str, Any] | None, name: str, guild_id: int | None
) -> dict[str, Any] | None:
    if source is None:
        return None
    if isinstance(source, Mapping):
        commands: list[dict[str, Any]] = list(source.get("defaults", source).get("commands", []))
    else:
        commands = source.registered_commands()
    guild_match = [c for c in commands if c["name"] == name and c.get("guild_id") == str(guild_id)]
    if guild_match:
        return guild_match[0]
    global_match = [c for c in commands if c["name"] == name and not c.get("guild_id")]
    return global_match[0] if global_match else None


def _invoker(
    source: FakeDiscord | Mapping[str, Any] | None,
    defaults: Mapping[str, Any],
    guild_id: int | None,
    user: Mapping[str, Any] | None,
    user_id: int | None,
) -> dict[str, Any]:
    if user is not None:
        return dict(user)
    if user_id is None:
        return dict(defaults["user"])
    if source is not None and not isinstance(source, Mapping):
        stored = source.users.get(user_id)
        if stored is not None:
            return dict(stored)
        return dict(source.add_user(f"user{user_id % 10000}", user_id=user_id))
    return user_payload(user_id, f"user{user_id % 10000}")


def _base_interaction(
    source: FakeDiscord | Mapping[str, Any] | None,
    *,
    interaction_type: int,
    data: dict[str, Any],
    user: Mapping[str, Any] | None,
    user_id: int | None,
    guild_id: Any,
    channel_id: int | None,
    app_permissions: int | str | None,
    member_permissions: int | str | None,
    member_roles: Sequence[int] | None,
    attachment_size_limit: int | None,
    locale: str,
    guild_locale: str,
    interaction_id: int | None,
    token: str | None,
    message: Mapping[str, Any] | None = None,
    user_install: bool = False,
    context: int | None = None,
) -> dict[str, Any]:
    defaults = _source_defaults(source)
    resolved_guild_id: int | None = defaults["guild_id"] if guild_id is ... else guild_id
    invoker = _invoker(source, defaults, resolved_guild_id, user, user_id)
    invoker_id = int(invoker["id"])
    if channel_id is None:
        if resolved_guild_id is None:
            if source is not None and not isinstance(source, Mapping):
                channel_id = int(source.open_dm(invoker_id)["id"])
            else:
                channel_id = snowflake()
        else:
            channel_id = defaults["channel_id"]
    assert channel_id is not None
    fake = source if source is not None and not isinstance(source, Mapping) else None

    roles: list[int] = list(member_roles) if member_roles is not None else []
    if resolved_guild_id is not None and fake is not None and not user_install:
        member = fake.ensure_member(resolved_guild_id, invoker_id, roles=member_roles)
        roles = [int(r) for r in member["roles"]]
        computed_member = fake.permissions_for(channel_id, invoker_id)
        computed_app = fake.permissions_for(channel_id, fake.bot_user_id)
    else:
        computed_member = DEFAULT_EVERYONE_PERMISSIONS if resolved_guild_id is not None else 0
        computed_app = DEFAULT_EVERYONE_PERMISSIONS | DEFAULT_BOT_PERMISSIONS
    member_perms = _perm_str(member_permissions, computed_member)
    app_perms = _perm_str(app_permissions, computed_app)
    if user_install and app_permissions is None:
        # Where only the member installed the app (a server without the bot, a group DM), Discord lists
        # what an interaction's answer may do; in the DM with the bot, external emojis too.
        app_perms = str(
            ATTACH_FILES | EMBED_LINKS | MENTION_EVERYONE | (USE_EXTERNAL_EMOJIS if context == 1 else 0)
        )
    if resolved_guild_id is None:
        # In a DM there is no member; app_permissions still lists what the app can do there.
        member_perms = _perm_str(member_permissions, 0)
        if app_permissions is None and not user_install:
            app_perms = str(VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES | READ_MESSAGE_HISTORY)

    iid = interaction_id or snowflake()
    limit = attachment_size_limit
    if limit is None:
        limit = fake.upload_limit_for(channel_id) if fake is not None else DEFAULT_UPLOAD_LIMIT
    payload: dict[str, Any] = {
        "id": str(iid),
        "application_id": str(defaults["application_id"]),
        "type": interaction_type,
        "data": data,
        "channel_id": str(channel_id),
        "channel": _interaction_channel(source, channel_id, resolved_guild_id, invoker, member_perms),
        "token": token or new_interaction_token(iid),
        "version": 1,
        "app_permissions": app_perms,
        "locale": locale,
        "entitlements": [],
        "entitlement_sku_ids": [],
        "attachment_size_limit": limit,
    }
    if resolved_guild_id is not None:
        payload["guild_id"] = str(resolved_guild_id)
        payload["guild"] = _partial_guild(resolved_guild_id, guild_locale)
        payload["guild_locale"] = guild_locale
        payload["member"] = member_payload(invoker, roles=roles, permissions=int(member_perms))
        payload["authorizing_integration_owners"] = {"0": str(resolved_guild_id)}
        payload["context"] = 0
    else:
        payload["user"] = invoker
        payload["authorizing_integration_owners"] = {"0": "0"}
        payload["context"] = 1
    if user_install:
        # Authorised by the member's own install only (context 0 a server, 1 the DM with the bot, 2 a
        # group DM or a DM between members).
        payload["authorizing_integration_owners"] = {"1": str(invoker_id)}
        payload["context"] = context if context is not None else (0 if resolved_guild_id is not None else 1)
    if message is not None:
        payload["message"] = dict(message)
    return payload


# ------------------------------------------------------------------------------------ command options


def option(name: str, value: Any, type: int | None = None) -> dict[str, Any]:
    """One ``data.options`` entry; the type is inferred from the value when not given.

    str → STRING, bool → BOOLEAN, int → INTEGER, float → NUMBER, an attachment dict → ATTACHMENT (its id
    becomes the value; :func:`slash_command` puts the attachment itself into ``data.resolved``).
    """
    if type is None:
        if isinstance(value, Mapping) and "filename" in value:
            type = OPTION_ATTACHMENT
        elif isinstance(value, bool):
            type = OPTION_BOOLEAN
        elif isinstance(value, int):
            type = OPTION_INTEGER
        elif isinstance(value, float):
            type = OPTION_NUMBER
        elif isinstance(value, str):
            type = OPTION_STRING
        else:
            raise TypeError(f"cannot infer the option type of {name}={value!r}; pass type=")
    if type == OPTION_ATTACHMENT and isinstance(value, Mapping):
        return {"name": name, "type": type, "value": str(value["id"]), "_attachment": dict(value)}
    if type in (OPTION_USER, OPTION_CHANNEL, OPTION_ROLE, OPTION_MENTIONABLE, OPTION_ATTACHMENT):
        value = str(value)
    return {"name": name, "type": type, "value": value}


def _normalise_options(
    options: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
    attachments: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    if options is None:
        return []
    items = [option(k, v) for k, v in options.items()] if isinstance(options, Mapping) else options
    out: list[dict[str, Any]] = []
    for item in items:
        entry = dict(item)
        attachment = entry.pop("_attachment", None)
        if attachment is not None:
            attachments[str(attachment["id"])] = attachment
        if "options" in entry:
            entry["options"] = _normalise_options(entry["options"], attachments)
        out.append(entry)
    return out


# ------------------------------------------------------------------------------------- interactions


def slash_command(
    source: FakeDiscord | Mapping[str, Any] | None = None,
    *,
    name: str = "animate",
    options: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    attachments: Iterable[Mapping[str, Any]] = (),
    subcommand: str | None = None,
    user: Mapping[str, Any] | None = None,
    user_id: int | None = None,
    guild_id: Any = ...,
    channel_id: int | None = None,
    command_id: int | None = None,
    command_guild_id: Any = ...,
    app_permissions: int | str | None = None,
    member_permissions: int | str | None = None,
    member_roles: Sequence[int] | None = None,
    attachment_size_limit: int | None = None,
    locale: str = "en-US",
    guild_locale: str = "en-US",
    interaction_id: int | None = None,
    token: str | None = None,
    user_install: bool = False,
    context: int | None = None,
) -> dict[str, Any]:
    """A type-2 (APPLICATION_COMMAND, CHAT_INPUT) interaction as INTERACTION_CREATE delivers it.

    ``user_install`` makes it come from the member's own install of the app (authorizing_integration_owners
    ``{"1": user}``, Discord's app_permissions for that case; ``context`` 0 in a server, 1 in the DM with the
    bot, 2 in a group DM); in a server the bot is not in, pass that server's id as ``guild_id``.

    ``options``: ``{"prompt": "a cat", "image": attachment_dict, "duration": 5}`` (types inferred, see
    :func:`option`) or a list of option dicts. Attachment values land in ``data.resolved.attachments``;
    ``attachments`` adds more resolved attachments without an option. ``subcommand`` wraps the options
    in a SUB_COMMAND option of that name. ``guild_id=None`` makes a DM interaction (``user`` instead of
    ``member``, ``context`` 1). ``command_guild_id`` (``data.guild_id``) defaults to the guild the fake has
    the command registered in, if any. ``app_permissions``/``member_permissions`` default to what the
    fake computes for the bot / the invoker in that channel (ints or decimal strings).
    """
    resolved_attachments: dict[str, dict[str, Any]] = {}
    opts = _normalise_options(options, resolved_attachments)
    for extra in attachments:
        resolved_attachments[str(extra["id"])] = dict(extra)
    if subcommand is not None:
        opts = [{"name": subcommand, "type": OPTION_SUB_COMMAND, "options": opts}]

    defaults = _source_defaults(source)
    effective_guild = defaults["guild_id"] if guild_id is ... else guild_id
    registered = _find_command(source, name, effective_guild)
    data: dict[str, Any] = {
        "id": str(command_id or (int(registered["id"]) if registered else snowflake())),
        "name": name,
        "type": 1,
        "options": opts,
    }
    if command_guild_id is ...:
        command_guild_id = registered.get("guild_id") if registered else None
    if command_guild_id is not None:
        data["guild_id"] = str(command_guild_id)
    if resolved_attachments:
        data["resolved"] = {"attachments": resolved_attachments}
    return _base_interaction(
        source,
        interaction_type=APPLICATION_COMMAND,
        data=data,
        user=user,
        user_id=user_id,
        guild_id=guild_id,
        channel_id=channel_id,
        app_permissions=app_permissions,
        member_permissions=member_permissions,
        member_roles=member_roles,
        attachment_size_limit=attachment_size_limit,
        locale=locale,
        guild_locale=guild_locale,
        interaction_id=interaction_id,
        token=token,
        user_install=user_install,
        context=context,
    )


def _message_with_button(
    source: FakeDiscord | Mapping[str, Any] | None,
    custom_id: str,
    channel_id: int,
    component_type: int,
) -> dict[str, Any]:
    defaults = _source_defaults(source)
    bot_user = (
        source.bot_user
        if source is not None and not isinstance(source, Mapping)
        else user_payload(defaults["bot_user_id"], "Kling Bot", bot=True)
    )
    component: dict[str, Any] = {"type": component_type, "custom_id": custom_id, "id": 2}
    if component_type == 2:
        component.update(style=1, label="Button")
    else:
        component.update(options=[], placeholder=None, min_values=1, max_values=1)
    return {
        "id": str(snowflake()),
        "channel_id": str(channel_id),
        "type": 0,
        "content": "",
        "author": bot_user,
        "attachments": [],
        "embeds": [],
        "mentions": [],
        "mention_roles": [],
        "mention_everyone": False,
        "pinned": False,
        "tts": False,
        "timestamp": iso_now(),
        "edited_timestamp": None,
        "flags": 0,
        "components": [{"type": 1, "id": 1, "components": [component]}],
    }


def button_click(
    source: FakeDiscord | Mapping[str, Any] | str | None = None,
    custom_id: str = "button",
    *,
    message: Mapping[str, Any] | int | None = None,
    component_type: int = 2,
    values: Sequence[str] | None = None,
    user: Mapping[str, Any] | None = None,
    user_id: int | None = None,
    guild_id: Any = ...,
    channel_id: int | None = None,
    app_permissions: int | str | None = None,
    member_permissions: int | str | None = None,
    member_roles: Sequence[int] | None = None,
    attachment_size_limit: int | None = None,
    locale: str = "en-US",
    guild_locale: str = "en-US",
    interaction_id: int | None = None,
    token: str | None = None,
    user_install: bool = False,
    context: int | None = None,
) -> dict[str, Any]:
    """A type-3 (MESSAGE_COMPONENT) interaction: someone clicked ``custom_id`` on ``message``.

    ``message`` is the message the component is on — a message dict (e.g. ``fake.messages[-1].message``
    or what discord.py's send returned, via the fake's records) or, with a fake, a message id. discord.py
    needs it: DynamicItem matching rebuilds the view from ``message.components``, so the clicked
    ``custom_id`` must be there. Without ``message`` a bot message with just that component is made up.
    ``component_type`` 3 with ``values`` makes a string-select interaction. ``button_click("my:id", ...)``
    (custom id first, no source) also works. ``user_install``/``context`` as in :func:`slash_command` (a
    press on a message of the member's own install).
    """
    src: FakeDiscord | Mapping[str, Any] | None
    if isinstance(source, str):
        src, custom_id = None, source
    else:
        src = source
    if isinstance(message, int):
        if src is None or isinstance(src, Mapping):
            raise TypeError("a message id needs a FakeDiscord source; pass the message dict instead")
        message = src.message(message).message
    if channel_id is None and message is not None:
        channel_id = int(message["channel_id"])
    defaults = _source_defaults(src)
    if channel_id is None:
        channel_id = defaults["channel_id"]
    assert channel_id is not None
    if message is None:
        message = _message_with_button(src, custom_id, channel_id, component_type)
    data: dict[str, Any] = {"custom_id": custom_id, "component_type": component_type}
    if component_type != 2:
        data["values"] = list(values or [])
    effective_guild: Any = guild_id
    if guild_id is ...:
        # The guild of the message's channel: from the fake's model, else the message, else the default.
        known: Mapping[str, Any] | None = None
        if src is not None and not isinstance(src, Mapping):
            known = src.channels.get(channel_id)
        elif isinstance(src, Mapping):
            known = src.get("defaults", src).get("channels", {}).get(str(channel_id))
        if known is not None:
            effective_guild = int(known["guild_id"]) if known.get("guild_id") else None
        elif message.get("guild_id") is not None:
            effective_guild = int(message["guild_id"])
    return _base_interaction(
        src,
        interaction_type=MESSAGE_COMPONENT,
        data=data,
        user=user,
        user_id=user_id,
        guild_id=effective_guild,
        channel_id=channel_id,
        app_permissions=app_permissions,
        member_permissions=member_permissions,
        member_roles=member_roles,
        attachment_size_limit=attachment_size_limit,
        locale=locale,
        guild_locale=guild_locale,
        interaction_id=interaction_id,
        token=token,
        message=message,
        user_install=user_install,
        context=context,
    )


def modal_submit(
    source: FakeDiscord | Mapping[str, Any] | None = None,
    custom_id: str = "modal",
    fields: Mapping[str, str] | None = None,
    *,
    message: Mapping[str, Any] | None = None,
    user: Mapping[str, Any] | None = None,
    user_id: int | None = None,
    guild_id: Any = ...,
    channel_id: int | None = None,
    interaction_id: int | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """A type-5 (MODAL_SUBMIT) interaction with text inputs ``{custom_id: value}``."""
    rows = [
        {"type": 1, "id": i * 2 + 1, "components": [{"type": 4, "id": i * 2 + 2, "custom_id": k, "value": v}]}
        for i, (k, v) in enumerate((fields or {}).items())
    ]
    return _base_interaction(
        source,
        interaction_type=MODAL_SUBMIT,
        data={"custom_id": custom_id, "components": rows},
        user=user,
        user_id=user_id,
        guild_id=guild_id,
        channel_id=channel_id,
        app_permissions=None,
        member_permissions=None,
        member_roles=None,
        attachment_size_limit=None,
        locale="en-US",
        guild_locale="en-US",
        interaction_id=interaction_id,
        token=token,
        message=message,
    )


def message_command(
    source: FakeDiscord | Mapping[str, Any] | None,
    message: Mapping[str, Any],
    *,
    name: str = "Animate",
    user_id: int | None = None,
    guild_id: Any = ...,
    member_permissions: int | str | None = None,
    interaction_id: int | None = None,
) -> dict[str, Any]:
    """A type-2 (APPLICATION_COMMAND, MESSAGE) interaction: someone used the message menu ``name`` on
    ``message`` (a message dict; it arrives resolved in ``data.resolved.messages``, as Discord sends it)."""
    defaults = _source_defaults(source)
    effective_guild = defaults["guild_id"] if guild_id is ... else guild_id
    registered = _find_command(source, name, effective_guild)
    data: dict[str, Any] = {
        "id": str(int(registered["id"]) if registered else snowflake()),
        "name": name,
        "type": 3,
        "target_id": str(message["id"]),
        "resolved": {"messages": {str(message["id"]): dict(message)}},
    }
    if registered and registered.get("guild_id"):
        data["guild_id"] = registered["guild_id"]
    return _base_interaction(
        source,
        interaction_type=APPLICATION_COMMAND,
        data=data,
        user=None,
        user_id=user_id,
        guild_id=guild_id,
        channel_id=int(message["channel_id"]),
        app_permissions=None,
        member_permissions=member_permissions,
        member_roles=None,
        attachment_size_limit=None,
        locale="en-US",
        guild_locale="en-US",
        interaction_id=interaction_id,
        token=None,
    )
