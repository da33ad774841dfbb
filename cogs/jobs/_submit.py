"""The one way a new job is submitted, whoever asks: /animate, the Animate menu, Retry/Remix/Extend and
the picture fixes. Admit (the bot is in the server, may work in the channel, the member may use /animate
here), prepare, check the block list, quote, record, defer, accept, offer a fix, say it is on its way;
every refusal is private and changes nothing."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord

from bot.command_access import AnimateDenied, CommandAccess, Member, NotInServer
from bot.errors import BotError, InputRefused
from bot.i18n import _
from bot.invite import REQUIRED_PERMISSIONS
from bot.jobs import Command, job_options
from bot.jobs.runner import ImageInput
from bot.media import PictureShapeRefused
from cogs._ui import installed_guild_id, public_locale, say_privately

if TYPE_CHECKING:
    from bot.app import KlingBot

log = logging.getLogger(__name__)

Answer = Callable[[discord.Interaction[Any], str], Awaitable[None]]


@dataclass(frozen=True)
class Submission:
    """A checked command, and its pictures when they are at hand (URLs sunra stores, or a prepared
    picture); `start` None means the request's attachments are fetched and checked after the deferral."""

    command: Command
    start: ImageInput | None = None
    end: ImageInput | None = None
    # Made only once the credit is reserved (Extend's last frame): slow work for a paying member only.
    inputs: Callable[[], Awaitable[tuple[ImageInput, ImageInput | None]]] | None = None


def missing_permissions(granted: discord.Permissions) -> list[str]:
    if granted.is_superset(REQUIRED_PERMISSIONS):
        # One comparison of two integers: walking the 50-odd flags cost 80 µs a command, 40 ms of a
        # 500-member crowd's acknowledgements (cProfile of benchmarks/crowd.py).
        return []
    missing = [name for name, wanted in REQUIRED_PERMISSIONS if wanted and not getattr(granted, name)]
    return [name.replace("_", " ").title() for name in missing]


# Without these the bot cannot post in the channel at all (a DM, a group DM, a server without the bot,
# a channel hidden from it): the job's messages go through the interaction instead (cogs/jobs/_delivery).
POSTING_PERMISSIONS = ("view_channel", "send_messages")


def check_channel(interaction: discord.Interaction[KlingBot]) -> bool:
    """Whether the job must be delivered through the interaction (True where the bot cannot post in the
    channel). Raises a refusal when the bot can post here but lacks another permission it needs, or
    sunra refuses new jobs for now."""
    granted = interaction.app_permissions
    through_interaction = not all(getattr(granted, name) for name in POSTING_PERMISSIONS)
    missing = missing_permissions(granted)
    if missing and not through_interaction:
        raise InputRefused(
            _(
                "I can't work in this channel: I'm missing {permissions}. Please ask a server admin to "
                "grant them, or use another channel.",
                permissions=", ".join(missing),
            )
        )
    blocked = interaction.client.sunra.submissions_blocked
    if blocked is not None:
        raise blocked
    return through_interaction


_ACCESS: weakref.WeakKeyDictionary[KlingBot, CommandAccess] = weakref.WeakKeyDictionary()


def animate_access(bot: KlingBot) -> CommandAccess:
    """The bot's reader of /animate's Integrations settings (one per bot, so its cache is shared)."""
    access = _ACCESS.get(bot)
    if access is None:

        async def fetch_settings(guild_id: int) -> list[Any]:
            application_id = bot.application_id or 0
            return list(await bot.http.get_guild_application_command_permissions(application_id, guild_id))

        async def fetch_animate(guild_id: int) -> tuple[int, int | None] | None:
            # /animate's id where it is registered (this server, or globally) and its default permissions.
            scope = discord.Object(guild_id) if guild_id in bot.settings.command_guild_ids else None
            for command in await bot.tree.fetch_commands(guild=scope):
                if command.name == "animate":
                    default = command.default_member_permissions
                    return command.id, default.value if default is not None else None
            return None

        access = CommandAccess(
            application_id=bot.application_id or 0, fetch_settings=fetch_settings, fetch_command=fetch_animate
        )
        _ACCESS[bot] = access
    return access


async def admit(interaction: discord.Interaction[KlingBot], *, access_checked_by_discord: bool) -> bool:
    """The one access rule, before anything is prepared or charged: the bot is still in the server, may
    work in the channel, sunra takes jobs, and the member may use /animate in this channel (Discord
    checked that itself for /animate; the menu, its form, the buttons and the fixes are checked here).
    A member's own install in a server without the bot is no server's use (installed_guild_id): only
    the channel check applies. Returns whether the job goes through the interaction (check_channel)."""
    bot = interaction.client
    guild_id = installed_guild_id(interaction)
    if guild_id is not None and bot.get_guild(guild_id) is None:
        raise NotInServer()
    through_interaction = check_channel(interaction)
    if guild_id is not None and not access_checked_by_discord:
        await animate_access(bot).check(
            _member(interaction), guild_id=guild_id, channel_id=interaction.channel_id or 0
        )
    return through_interaction


def _member(interaction: discord.Interaction[Any]) -> Member:
    return Member(interaction.user.id, member_role_ids(interaction), interaction.permissions.value)


async def refused_before_form(interaction: discord.Interaction[KlingBot]) -> bool:
    """Before a form opens (the menu's, Remix's, Extend's): tells a member the bot already knows is kept
    from /animate here, so they do not fill in a form for nothing. Only what is cached is used (a form
    must open within 3 seconds); the submission is checked in full either way."""
    guild_id = installed_guild_id(interaction)
    if guild_id is None:
        return False
    access = animate_access(interaction.client)
    channel_id = interaction.channel_id or 0
    if access.known_verdict(_member(interaction), guild_id=guild_id, channel_id=channel_id) is False:
        await say_privately(interaction, AnimateDenied.user_message)
        return True
    return False


def member_role_ids(interaction: discord.Interaction[Any]) -> tuple[int, ...]:
    user = interaction.user
    if isinstance(user, discord.Member):
        return tuple(role.id for role in user.roles)
    return ()


def on_its_way(place: int, reservation: str, *, here: bool = True) -> str:
    if not here:
        return _(
            "Your video is on its way (place {place} in line); it will arrive here, or in your DMs with me "
            "if it takes longer than 15 minutes. {reservation}",
            place=place,
            reservation=reservation,
        )
    return _(
        "Your video is on its way (place {place} in line); follow it in this channel. {reservation}",
        place=place,
        reservation=reservation,
    )


async def submit_job(
    interaction: discord.Interaction[KlingBot],
    prepare: Callable[[], Awaitable[Submission]],
    *,
    defer: bool,
    answer: Answer = say_privately,
    offer_fix: bool = True,
    access_checked_by_discord: bool = False,
) -> None:
    """Admits the member (see `admit`), prepares the job (its checks raise BotError), checks its prompt
    against the server's block list, quotes it, records it, acknowledges the interaction when `defer`
    (else the caller already did), hands it to the runner and tells the member.

    A picture refused for its shape or size gets the offer to fix it when `offer_fix`. `answer` says each
    sentence (a private reply by default; the fix offer edits its own message).
    `access_checked_by_discord`: only /animate itself, whose Integrations settings Discord applied.
    """
    bot = interaction.client
    # Until the acknowledgement, this command holds back the work of those acknowledged before it.
    with bot.runner.acknowledgements.owed() if defer else contextlib.nullcontext():
        try:
            through_interaction = await admit(
                interaction, access_checked_by_discord=access_checked_by_discord
            )
            submission = await prepare()
            command = submission.command
            if through_interaction and not command.deliver_via_interaction:
                command = dataclasses.replace(command, deliver_via_interaction=True)
            if command.locale is None:
                command = dataclasses.replace(command, locale=public_locale(interaction))
            await bot.prompt_filter.check(command.guild_id, command.request.prompt)
            await bot.quota.quote(
                guild_id=command.guild_id,
                user_id=command.user_id,
                role_ids=command.role_ids,
                options=job_options(command.request),
            )
        except BotError as refusal:
            await answer(interaction, refusal.user_message)
            return
        job_id, is_new = await bot.runner.record(command)
        if not is_new:
            return  # the same interaction delivered twice: the first one is being handled
        # The reporter cogs.jobs handed the bot (DiscordReporter; bot/ knows only the Reporter protocol).
        routes = getattr(bot.reporter, "routes", None)
        if routes is not None and command.deliver_via_interaction:
            routes.remember(job_id, interaction)  # its progress and video go through this interaction
        if defer:
            try:
                await interaction.response.defer(ephemeral=True, thinking=True)
            except discord.HTTPException as error:
                # Too late (10062) or refused: the member saw "did not respond", so the job must not run.
                log.warning(
                    "interaction %s: acknowledgement failed (%s); job dropped", interaction.id, error.code
                )
                await bot.runner.drop_unacknowledged(job_id)
                return
            bot.metrics.acknowledged(interaction.id)
    try:
        if submission.inputs is not None:
            accepted = await bot.runner.accept_after_reserving(job_id, command, submission.inputs)
        elif submission.start is None:
            accepted = await bot.runner.accept(job_id, command)
        else:
            accepted = await bot.runner.accept_inputs(job_id, command, submission.start, submission.end)
    except PictureShapeRefused as refusal:
        if offer_fix:
            # Here, not at the top: the fix's confirmation submits through this module in turn.
            from cogs.jobs._fixing import offer_picture_fix

            await offer_picture_fix(interaction, job_id, command, refusal)
        else:
            await answer(interaction, refusal.user_message)
        return
    except BotError as refusal:
        await answer(interaction, refusal.user_message)
        return
    here = not command.deliver_via_interaction
    try:
        await answer(interaction, on_its_way(accepted.place, accepted.reservation.describe(), here=here))
    finally:
        if routes is not None:
            routes.answered(job_id)  # the progress followup may follow the answer now
