"""A picture refused only for its shape or size: the private refusal offers to fix it, shows the fixed
picture, and submits only when the member confirms. Discord in, bot/picture_fix.py out.

Nothing is charged before the confirmation: the refused job ended with nothing reserved, and the
confirmation is a new job that goes through the runner like any other (quota, caps, fair queue).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from io import BytesIO
from typing import TYPE_CHECKING, Any

import discord

from bot.errors import BotError
from bot.i18n import _, render
from bot.jobs import Command, job_options
from bot.media import PictureShapeRefused, PreparedImage
from bot.picture_fix import FIX_LABELS, Fix, fix_file, fixes_for_file
from cogs._ui import NO_MENTIONS, for_member
from cogs.jobs._submit import Submission, submit_job

if TYPE_CHECKING:
    from bot.app import KlingBot

log = logging.getLogger(__name__)

DONE = {
    Fix.CROP: _("cropped"),
    Fix.PAD_BLUR: _("padded with blurred edges"),
    Fix.PAD_PLAIN: _("padded with plain edges"),
    Fix.UPSCALE: _("scaled up"),
}
FIX_SECONDS = 15 * 60  # an interaction's lifetime: the ephemeral message cannot be edited after it


async def offer_picture_fix(
    interaction: discord.Interaction[KlingBot], command: Command, refusal: PictureShapeRefused
) -> None:
    """Answers a shape or size refusal (the interaction is deferred) with buttons that fix the picture."""
    request = command.request
    ref = request.image if refusal.label == "image" or request.end_image is None else request.end_image
    try:
        data = await interaction.client.images.download(ref.url, label=refusal.label)
        fixes = await asyncio.to_thread(fixes_for_file, data)
    except (BotError, OSError) as error:
        log.info("cannot offer a fix for interaction %s: %s", interaction.id, error)
        fixes = []
    if not fixes:
        await interaction.edit_original_response(
            content=for_member(interaction, refusal.user_message), allowed_mentions=NO_MENTIONS
        )
        return
    view = FixView(command, refusal.label, data, fixes, locale=str(interaction.locale))
    text = _(
        "{refusal}\nOr I can fix it for you (nothing is charged until you confirm):",
        refusal=refusal.user_message,
    )
    await interaction.edit_original_response(
        content=for_member(interaction, text), view=view, allowed_mentions=NO_MENTIONS
    )


class FixView(discord.ui.View):
    def __init__(
        self, command: Command, label: str, data: bytes, fixes: list[Fix], *, locale: str = "en-US"
    ) -> None:
        super().__init__(timeout=FIX_SECONDS)
        self.command, self.label, self.data, self.fixes = command, label, data, fixes
        self.locale = locale  # the member's, for the buttons' labels
        self.fixed: PreparedImage | None = None
        self._show_buttons()

    def _show_buttons(self) -> None:
        self.clear_items()
        for fix in self.fixes:
            button: discord.ui.Button[FixView] = discord.ui.Button(
                label=render(FIX_LABELS[fix], self.locale),
                style=discord.ButtonStyle.secondary,
                custom_id=f"fix:{fix.value}",
            )
            button.callback = self._fixer(fix)  # type: ignore[method-assign]
            self.add_item(button)
        if self.fixed is not None:
            confirm: discord.ui.Button[FixView] = discord.ui.Button(
                label=render(_("Animate this"), self.locale),
                emoji="🎬",
                style=discord.ButtonStyle.success,
                custom_id="fix:confirm",
            )
            confirm.callback = self._confirm  # type: ignore[method-assign,assignment]
            self.add_item(confirm)

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        return interaction.user.id == self.command.user_id

    def _fixer(self, fix: Fix) -> Any:
        async def apply(interaction: discord.Interaction[KlingBot]) -> None:
            await interaction.response.defer()
            try:
                png = await asyncio.to_thread(fix_file, self.data, fix)
                self.fixed = await interaction.client.images.prepare(png, label=self.label)
            except BotError as error:
                await self._finish(interaction, error.user_message)
                return
            self._show_buttons()
            shown = discord.File(
                BytesIO(self.fixed.data), filename=f"fixed.{self.fixed.filename.rsplit('.', 1)[-1]}"
            )
            await interaction.edit_original_response(
                content=for_member(
                    interaction,
                    _(
                        "Here is the {label} {done}: {width}×{height} px. Animate it, or try another fix.",
                        label=_("image") if self.label == "image" else _("end image"),
                        done=DONE[fix],
                        width=self.fixed.width,
                        height=self.fixed.height,
                    ),
                ),
                attachments=[shown],
                view=self,
            )

        return apply

    async def _confirm(self, interaction: discord.Interaction[KlingBot]) -> None:
        await interaction.response.defer()
        bot = interaction.client
        fixed, old = self.fixed, self.command
        assert fixed is not None
        request = old.request
        # A new job for the confirmation: the refused one stays as it ended.
        command = dataclasses.replace(
            old, interaction_id=interaction.id, upload_limit=interaction.filesize_limit
        )

        async def prepare() -> Submission:
            # Before the other picture's download: a member without credits waits for nothing.
            await bot.quota.quote(
                guild_id=command.guild_id,
                user_id=command.user_id,
                role_ids=command.role_ids,
                options=job_options(request),
            )
            # The other picture, checked as /animate checks it, before anything is recorded.
            if self.label == "image":
                other = request.end_image
                end = await bot.images.fetch(other.url, label="end image") if other else None
                return Submission(command, fixed, end)
            return Submission(command, await bot.images.fetch(request.image.url, label="image"), fixed)

        self.stop()
        await submit_job(interaction, prepare, defer=False, answer=self._finish, offer_fix=False)

    @staticmethod
    async def _finish(interaction: discord.Interaction[Any], text: str) -> None:
        await interaction.edit_original_response(
            content=for_member(interaction, text), attachments=[], view=None, allowed_mentions=NO_MENTIONS
        )

    async def on_error(self, interaction: discord.Interaction[Any], error: Exception, item: Any, /) -> None:
        log.error("picture fix failed", exc_info=error)
        await self._finish(interaction, _("Something went wrong inside the bot; nothing was charged."))
