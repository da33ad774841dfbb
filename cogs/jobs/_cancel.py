"""The Cancel button on a progress message."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord

from bot.command_access import JobElsewhere
from bot.i18n import _
from cogs._ui import IdButton, job_here, say_privately

if TYPE_CHECKING:
    from bot.app import KlingBot

log = logging.getLogger(__name__)


class CancelButton(IdButton, kind="cancel"):
    """The Cancel button on a progress message: `kling:cancel:<job id>`."""

    label = _("Cancel")

    async def interaction_check(self, interaction: discord.Interaction[KlingBot]) -> bool:  # type: ignore[override]
        # Deferred before anything else: the answer then has 15 minutes, not 3 seconds.
        try:
            await interaction.response.defer(ephemeral=True, thinking=True)
        except discord.HTTPException as error:
            log.info("interaction %s: cannot acknowledge the press (%s)", interaction.id, error.code)
            return False
        job = await interaction.client.job_store.get(self.number)
        if job is None:
            await say_privately(interaction, _("I no longer know this job."))
            return False
        try:
            # A moderator here is no moderator of another server's or channel's job.
            job_here(interaction, job)
        except JobElsewhere as refusal:
            await say_privately(interaction, refusal.user_message)
            return False
        may_manage = bool(interaction.permissions.manage_messages)
        if interaction.user.id != job.user_id and not may_manage:
            await say_privately(
                interaction, _("Only the member who asked for this video, or a moderator, can cancel it.")
            )
            return False
        return True

    async def callback(self, interaction: discord.Interaction[KlingBot]) -> None:  # type: ignore[override]
        job = await interaction.client.job_store.get(self.number)
        by_owner = job is not None and job.user_id == interaction.user.id
        reason = (
            _("You cancelled it; nothing was charged.")
            if by_owner
            else _("It was cancelled by {member}; nothing was charged.", member=f"<@{interaction.user.id}>")
        )
        stopped = await interaction.client.runner.cancel(self.number, reason)
        await say_privately(
            interaction,
            _("Cancelling the job…")
            if stopped
            else _("This job has already finished or is being delivered."),
        )
