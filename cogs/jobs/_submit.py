"""The one way a new job is submitted, whoever asks: /animate, the Animate menu, Retry/Remix/Extend and
the picture fixes. Quote, record, defer, accept, offer a fix, say it is on its way; every refusal is
private and changes nothing."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord

from bot.errors import BotError, InputRefused
from bot.i18n import _
from bot.invite import REQUIRED_PERMISSIONS
from bot.jobs import Command, job_options
from bot.jobs.runner import ImageInput
from bot.media import PictureShapeRefused
from cogs._ui import say_privately

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


def missing_permissions(granted: discord.Permissions) -> list[str]:
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


def member_role_ids(interaction: discord.Interaction[Any]) -> tuple[int, ...]:
    user = interaction.user
    if isinstance(user, discord.Member):
        return tuple(role.id for role in user.roles)
    return ()


def on_its_way(place: int, reservation: str, *, here: bool = True) -> str:
    if not here:
        return _(
            "Your video is on its way (place {place} in line); it will arrive here. {reservation}",
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
) -> None:
    """Prepares the job (its checks raise BotError), quotes it, records it, acknowledges the interaction
    when `defer` (else the caller already did), hands it to the runner and tells the member.

    A picture refused for its shape or size gets the offer to fix it when `offer_fix`. `answer` says each
    sentence (a private reply by default; the fix offer edits its own message).
    """
    bot = interaction.client
    try:
        submission = await prepare()
        command = submission.command
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
        if submission.start is None:
            accepted = await bot.runner.accept(job_id, command)
        else:
            accepted = await bot.runner.accept_inputs(job_id, command, submission.start, submission.end)
    except PictureShapeRefused as refusal:
        if offer_fix:
            # Here, not at the top: the fix's confirmation submits through this module in turn.
            from cogs.jobs._fixing import offer_picture_fix

            await offer_picture_fix(interaction, command, refusal)
        else:
            await answer(interaction, refusal.user_message)
        return
    except BotError as refusal:
        await answer(interaction, refusal.user_message)
        return
    here = not command.deliver_via_interaction
    await answer(interaction, on_its_way(accepted.place, accepted.reservation.describe(), here=here))
