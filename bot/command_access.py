"""Who may make a video where: one rule for every way in, as Discord decides it for /animate.

/animate, the Animate menu and its form, Retry, Remix, Extend and the picture fixes all make videos, so
they all follow /animate's own access: a member an admin kept from /animate in a channel (a user, role or
channel entry under Server Settings → Integrations) must not get around it with the menu or a button. The
menu's own entries only narrow it. Discord applies these settings to /animate itself but never to
buttons, forms or other commands, so the bot reads them (one request per server, cached briefly) and
evaluates them here; when Discord cannot say, the answer is no (`AccessUnknown`).

Every button and form names a job in its custom_id; `check_job_place` refuses a press that names a job of
another server or channel (`JobElsewhere`), so a form or button can act only where its job was made.

Rules, from Discord's "Application Command Permissions" documentation (docs/interactions/
application-commands#permissions): settings on the command win over the app-wide ones (entry id = the
application id); a channel setting (or "all channels", id = guild id - 1) must not deny; for the member,
a user setting decides, else any of their roles allowed or denied, else @everyone (id = guild id); with
no setting at all, the command's default_member_permissions decide. Administrators may always.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.errors import InputRefused
from bot.i18n import _

log = logging.getLogger(__name__)

ROLE, USER, CHANNEL = 1, 2, 3
ADMINISTRATOR = 1 << 3
CACHE_SECONDS = 60.0


class AnimateDenied(InputRefused):
    """The server's Integrations settings keep this member from /animate in this channel."""

    user_message = _(
        "You can't use /animate in this channel, so the Animate menu and the video buttons can't make "
        "videos for you here either. Nothing was charged."
    )


class AccessUnknown(InputRefused):
    """Discord did not say who may use /animate here; the bot refuses rather than guess."""

    user_message = _(
        "I couldn't read this server's command settings from Discord just now, so I can't tell whether "
        "you may use /animate here. Nothing was charged; please try again in a minute."
    )
    retryable = True


class JobElsewhere(InputRefused):
    """A button or form names a job made in another server or channel than the one it was used in."""

    user_message = _(
        "This button or form belongs to a video made somewhere else, so it can't act here. Nothing was "
        "changed or charged."
    )


class NotInServer(InputRefused):
    """The bot is no longer a member of the server the command came from."""

    user_message = _(
        "I'm no longer a member of this server, so I can't make or change videos here. Nothing was "
        "charged; a server admin can add me again."
    )


def check_job_place(
    *,
    job_guild_id: int | None,
    job_channel_id: int,
    job_user_id: int,
    guild_id: int | None,
    channel_id: int | None,
    user_id: int,
) -> None:
    """Raises JobElsewhere unless a press in (guild_id, channel_id) by user_id may act on the job made
    in (job_guild_id, job_channel_id) by job_user_id: the same server and channel, or a direct message
    (where only the job's own member gets its posts, as the DM fallback sends them to nobody else)."""
    if guild_id is None:
        if job_user_id != user_id:
            raise JobElsewhere()
        return
    if job_guild_id != guild_id or job_channel_id != channel_id:
        raise JobElsewhere()


@dataclass(frozen=True, slots=True)
class Setting:
    id: int
    type: int  # ROLE, USER or CHANNEL
    permission: bool


@dataclass(frozen=True, slots=True)
class Member:
    user_id: int
    role_ids: Sequence[int]
    permissions: int  # the member's permissions in the channel


def settings_from(entries: Iterable[Mapping[str, Any]]) -> dict[int, list[Setting]]:
    """{command or application id: its settings}, from the API's GuildApplicationCommandPermissions list."""
    found: dict[int, list[Setting]] = {}
    for entry in entries:
        found[int(entry["id"])] = [
            Setting(int(s["id"]), int(s["type"]), bool(s["permission"])) for s in entry.get("permissions", [])
        ]
    return found


def may_use(
    member: Member,
    *,
    guild_id: int,
    channel_id: int,
    command: Sequence[Setting],
    app: Sequence[Setting],
    default_member_permissions: int | None,
) -> bool:
    if member.permissions & ADMINISTRATOR:
        return True
    for level in (command, app):
        channel = _channel_verdict(level, guild_id, channel_id)
        if channel is not None:
            if not channel:
                return False
            break
    for level in (command, app):
        verdict = _member_verdict(level, member, guild_id)
        if verdict is not None:
            return verdict
    if default_member_permissions is None:
        return True
    return member.permissions & default_member_permissions == default_member_permissions


def _channel_verdict(settings: Sequence[Setting], guild_id: int, channel_id: int) -> bool | None:
    channels = {s.id: s.permission for s in settings if s.type == CHANNEL}
    if channel_id in channels:
        return channels[channel_id]
    return channels.get(guild_id - 1)


def _member_verdict(settings: Sequence[Setting], member: Member, guild_id: int) -> bool | None:
    for setting in settings:
        if setting.type == USER and setting.id == member.user_id:
            return setting.permission
    roles = [
        s.permission for s in settings if s.type == ROLE and s.id in member.role_ids and s.id != guild_id
    ]
    if roles:
        return any(roles)
    for setting in settings:
        if setting.type == ROLE and setting.id == guild_id:
            return setting.permission
    return None


class CommandAccess:
    """Caches each server's command settings and the command's id for CACHE_SECONDS.

    `fetch_settings(guild_id)` returns the API's GuildApplicationCommandPermissions list;
    `fetch_command(guild_id)` returns (command id, default_member_permissions) or None when the command is
    not registered there.
    """

    def __init__(
        self,
        *,
        application_id: int,
        fetch_settings: Callable[[int], Awaitable[list[Any]]],
        fetch_command: Callable[[int], Awaitable[tuple[int, int | None] | None]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.application_id = application_id
        self._fetch_settings = fetch_settings
        self._fetch_command = fetch_command
        self._clock = clock
        self._cache: dict[int, tuple[float, dict[int, list[Setting]], tuple[int, int | None] | None]] = {}

    async def check(self, member: Member, *, guild_id: int, channel_id: int) -> None:
        """Raises AnimateDenied when the settings keep the member from the command in the channel, and
        AccessUnknown when they cannot be read (whatever the fetchers raised: fail closed)."""
        try:
            allowed = await self.allows(member, guild_id=guild_id, channel_id=channel_id)
        except Exception as error:
            log.warning("cannot read the command settings of server %s (%s)", guild_id, type(error).__name__)
            raise AccessUnknown() from error
        if not allowed:
            raise AnimateDenied()

    def known_verdict(self, member: Member, *, guild_id: int, channel_id: int) -> bool | None:
        """The verdict from the cache alone, without asking Discord; None when the cache cannot say. For
        the moment before a form opens, which must answer within Discord's 3 seconds."""
        cached = self._cache.get(guild_id)
        if cached is None or self._clock() - cached[0] > CACHE_SECONDS:
            return None
        return self._verdict(member, cached, guild_id=guild_id, channel_id=channel_id)

    async def allows(self, member: Member, *, guild_id: int, channel_id: int) -> bool:
        cached = self._cache.get(guild_id)
        if cached is None or self._clock() - cached[0] > CACHE_SECONDS:
            settings = settings_from(await self._fetch_settings(guild_id))
            command = await self._fetch_command(guild_id)
            cached = (self._clock(), settings, command)
            self._cache[guild_id] = cached
        return self._verdict(member, cached, guild_id=guild_id, channel_id=channel_id)

    def _verdict(
        self,
        member: Member,
        cached: tuple[float, dict[int, list[Setting]], tuple[int, int | None] | None],
        *,
        guild_id: int,
        channel_id: int,
    ) -> bool:
        _, settings, command = cached
        command_id, default = command if command is not None else (0, None)
        return may_use(
            member,
            guild_id=guild_id,
            channel_id=channel_id,
            command=settings.get(command_id, []),
            app=settings.get(self.application_id, []),
            default_member_permissions=default,
        )
