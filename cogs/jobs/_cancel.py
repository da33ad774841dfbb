"""The Cancel button on a progress message."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import discord

from cogs._ui import say_privately

if TYPE_CHECKING:
    from bot.app import KlingBot

log = logging.getLogger(__name__)


class CancelButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=r"kling:cancel:(?P<job_id>\d+)"
):
    """The Cancel button on a progress message; works after restarts because it reads the job id from
    its custom_id."""

    def __init__(self, job_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label="Cancel", style=discord.ButtonStyle.secondary, custom_id=f"kling:cancel:{job_id}"
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: Any, /
    ) -> CancelButton:
        return cls(int(match["job_id"]))

    async def interaction_check(self, interaction: discord.Interaction[KlingBot]) -> bool:  # type: ignore[override]
        # Deferred before anything else: the answer then has 15 minutes, not 3 seconds.
        try:
            await interaction.response.defer(ephemeral=True, thinking=True)
        except discord.HTTPException as error:
            log.info("interaction %s: cannot acknowledge the press (%s)", interaction.id, error.code)
            return False
        job = await interaction.client.job_store.get(self.job_id)
        if job is None:
            await say_privately(interaction, "I no longer know this job.")
            return False
        may_manage = bool(interaction.permissions.manage_messages)
        if interaction.user.id != job.user_id and not may_manage:
            await say_privately(
                interaction, "Only the member who asked for this video, or a moderator, can cancel it."
            )
            return False
        return True

    async def callback(self, interaction: discord.Interaction[KlingBot]) -> None:  # type: ignore[override]
        job = await interaction.client.job_store.get(self.job_id)
        by_owner = job is not None and job.user_id == interaction.user.id
        reason = (
            "You cancelled it; nothing was charged."
            if by_owner
            else f"It was cancelled by <@{interaction.user.id}>; nothing was charged."
        )
        stopped = await interaction.client.runner.cancel(self.job_id, reason)
        await say_privately(
            interaction,
            "Cancelling the job…" if stopped else "This job has already finished or is being delivered.",
        )
