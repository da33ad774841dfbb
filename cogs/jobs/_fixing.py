"""A picture refused only for its shape or size: the private refusal offers to fix it, shows the fixed
picture, and submits only when the member confirms. Discord in, bot/picture_fix.py out.

Nothing is charged before the confirmation: the refused job ended with nothing reserved, and the
confirmation is a new job through the one submit path (/animate's access, the block list, quota, caps,
fair queue). The buttons hold no state: `kling:fix:<refused job>:<fix>:<i|e>` and `kling:fixgo:…` name
the refused job, whose record keeps the request, so each press downloads the picture again and applies
the fix (the same fix gives the same picture): they work after a restart.
"""

from __future__ import annotations

import asyncio
import logging
import re
from io import BytesIO
from typing import TYPE_CHECKING, Any, Self

import discord

from bot import results
from bot.errors import BotError, InputRefused
from bot.i18n import _, render
from bot.jobs import Command, job_options
from bot.media import PictureShapeRefused, PreparedImage
from bot.picture_fix import FIX_LABELS, Fix, fix_file, fixes_for_file
from bot.store.jobs import JobRow
from cogs._ui import NO_MENTIONS, IdButton, for_member, job_here, say_privately, stored_id
from cogs.jobs._submit import Submission, member_role_ids, submit_job

if TYPE_CHECKING:
    from bot.app import KlingBot

log = logging.getLogger(__name__)

DONE = {
    Fix.CROP: _("cropped"),
    Fix.PAD_BLUR: _("padded with blurred edges"),
    Fix.PAD_PLAIN: _("padded with plain edges"),
    Fix.UPSCALE: _("scaled up"),
}
# Refused jobs whose fix is being confirmed in this process: a double press makes one video.
_CONFIRMING: set[int] = set()
NOT_YOURS = _("Only the member whose picture this is can fix it.")
NO_FIX = _(
    "This fix is no longer available (the picture is gone, or it was already used). Nothing was charged; "
    "please use /animate again."
)


async def offer_picture_fix(
    interaction: discord.Interaction[KlingBot], job_id: int, command: Command, refusal: PictureShapeRefused
) -> None:
    """Answers a shape or size refusal of job `job_id` (the interaction is deferred) with buttons that fix
    the picture."""
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
    which = "i" if refusal.label == "image" else "e"
    view = fix_view(job_id, which, fixes, shown=None, locale=str(interaction.locale))
    text = for_member(
        interaction,
        _(
            "{refusal}\nOr I can fix it for you (nothing is charged until you confirm):",
            refusal=refusal.user_message,
        ),
    )
    await interaction.edit_original_response(content=text, view=view, allowed_mentions=NO_MENTIONS)


def fix_view(
    job_id: int, which: str, fixes: list[Fix], *, shown: Fix | None, locale: str = "en-US"
) -> discord.ui.View:
    """The fix buttons, labelled in the member's language (a press is read by its custom_id)."""
    view = discord.ui.View(timeout=None)
    for fix in fixes:
        view.add_item(FixButton(job_id, fix, which, locale=locale))
    if shown is not None:
        view.add_item(FixButton(job_id, shown, which, confirm=True, locale=locale))
    return view


FIXES = "|".join(fix.value for fix in Fix)


class FixButton(IdButton, template=rf"kling:fix(?P<go>go)?:(?P<number>\d+):(?P<fix>{FIXES}):(?P<which>[ie])"):
    """A fix of the refused job's picture (`kling:fix:…`: shown, nothing charged) or its confirmation
    (`kling:fixgo:…`: submitted as a new job)."""

    def __init__(
        self, job_id: int, fix: Fix, which: str, *, confirm: bool = False, locale: str = "en-US"
    ) -> None:
        button: discord.ui.Button[discord.ui.View] = discord.ui.Button(
            label=render(_("Animate this") if confirm else FIX_LABELS[fix], locale),
            emoji="🎬" if confirm else None,
            style=discord.ButtonStyle.success if confirm else discord.ButtonStyle.secondary,
            custom_id=f"kling:fix{'go' if confirm else ''}:{job_id}:{fix.value}:{which}",
        )
        discord.ui.DynamicItem.__init__(self, button)
        self.number, self.fix, self.which, self.confirm = job_id, fix, which, confirm

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Self:
        return cls(stored_id(match["number"]), Fix(match["fix"]), match["which"], confirm=bool(match["go"]))

    @property
    def label_text(self) -> str:
        return "image" if self.which == "i" else "end image"

    async def callback(self, interaction: discord.Interaction[KlingBot]) -> None:  # type: ignore[override]
        # The job is checked before the press is acknowledged: a press naming a job that is not this
        # member's refused job here is told privately, and the offer it came from stays as it is.
        try:
            job = await self._refused_job(interaction)
        except BotError as refusal:
            await say_privately(interaction, refusal.user_message)
            return
        await interaction.response.defer()
        try:
            data = await self._picture(interaction, job)
            if not self.confirm:
                fixed = await self._fixed(interaction, data)
                await self._show(interaction, job, fixed, data)
                return
        except BotError as refusal:
            await finish(interaction, refusal.user_message)
            return
        await self._submit(interaction, job, data)

    async def _refused_job(self, interaction: discord.Interaction[KlingBot]) -> JobRow:
        """The refused job this button names, the presser's and made here; else raises InputRefused or
        JobElsewhere."""
        job = await interaction.client.job_store.get(self.number)
        if job is None or job.state != "refused":
            raise InputRefused(NO_FIX)
        if job.user_id != interaction.user.id:
            raise InputRefused(NOT_YOURS)
        job_here(interaction, job)
        return job

    async def _picture(self, interaction: discord.Interaction[KlingBot], job: JobRow) -> bytes:
        """The refused job's picture's bytes, downloaded again."""
        request = results.stored_request(job)
        ref = request.end_image if self.which == "e" and request.end_image else request.image
        try:
            return await interaction.client.images.download(ref.url, label=self.label_text)
        except (BotError, OSError) as error:
            log.info("job %s: picture to fix unavailable (%s)", job.id, type(error).__name__)
            raise InputRefused(NO_FIX) from error

    async def _fixed(self, interaction: discord.Interaction[KlingBot], data: bytes) -> PreparedImage:
        png = await asyncio.to_thread(fix_file, data, self.fix)
        return await interaction.client.images.prepare(png, label=self.label_text)

    async def _show(
        self, interaction: discord.Interaction[KlingBot], job: JobRow, fixed: PreparedImage, data: bytes
    ) -> None:
        fixes = await asyncio.to_thread(fixes_for_file, data)
        shown = discord.File(BytesIO(fixed.data), filename=f"fixed.{fixed.filename.rsplit('.', 1)[-1]}")
        await interaction.edit_original_response(
            content=for_member(
                interaction,
                _(
                    "Here is the {label} {done}: {width}×{height} px. Animate it, or try another fix.",
                    label=_("image") if self.which == "i" else _("end image"),
                    done=DONE[self.fix],
                    width=fixed.width,
                    height=fixed.height,
                ),
            ),
            attachments=[shown],
            view=fix_view(job.id, self.which, fixes, shown=self.fix, locale=str(interaction.locale)),
        )

    async def _submit(self, interaction: discord.Interaction[KlingBot], job: JobRow, data: bytes) -> None:
        bot = interaction.client
        request = results.stored_request(job)
        # A new job for the confirmation: the refused one stays as it ended.
        command = Command(
            interaction_id=interaction.id,
            guild_id=job.guild_id,
            channel_id=job.channel_id,
            user_id=interaction.user.id,
            role_ids=member_role_ids(interaction),
            upload_limit=interaction.filesize_limit,
            request=request,
        )

        async def prepare() -> Submission:
            # Before any other work: a member without credits waits for nothing.
            await bot.quota.quote(
                guild_id=command.guild_id,
                user_id=command.user_id,
                role_ids=command.role_ids,
                options=job_options(request),
            )
            fixed = await self._fixed(interaction, data)
            # The other picture, checked as /animate checks it, before anything is recorded.
            if self.which == "i":
                other = request.end_image
                end = await bot.images.fetch(other.url, label="end image") if other else None
                return Submission(command, fixed, end)
            return Submission(command, await bot.images.fetch(request.image.url, label="image"), fixed)

        if job.id in _CONFIRMING:
            return  # a second press while the first is submitted: its answer replaces the buttons
        _CONFIRMING.add(job.id)
        try:
            await submit_job(interaction, prepare, defer=False, answer=finish, offer_fix=False)
        finally:
            _CONFIRMING.discard(job.id)


async def finish(interaction: discord.Interaction[Any], text: str) -> None:
    await interaction.edit_original_response(
        content=for_member(interaction, text), attachments=[], view=None, allowed_mentions=NO_MENTIONS
    )
