"""A member's job on Discord, from the command to the video's buttons. `setup` wires the package:

- `_command.py`  /animate (AnimateCog)
- `_menu.py`     the Animate message menu and its form
- `_submit.py`   the one way a new job is submitted (the command, the menu, Retry/Remix/Extend, fixes)
- `_cancel.py`   the Cancel button on a progress message
- `_delivery.py` the progress message, the final post and its fallbacks (DiscordReporter)
- `_results.py`  the buttons under a video (Retry, Remix, Extend, Delete) and their forms
- `_fixing.py`   the offer to fix a picture refused for its shape or size (buttons that outlive restarts)

The rules live in bot/ (bot/jobs/, bot/request.py, bot/results.py, bot/picture_fix.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bot.message_pictures import complete_attachments

if TYPE_CHECKING:
    from bot.app import KlingBot


def accept_partial_attachments(bot: KlingBot) -> None:
    """Lets discord.py parse an interaction whose attachments lack fields it requires (Discord has sent
    some without `size`): they are filled in (size 0 = unknown, checked when downloaded) before parsing,
    where discord.py would otherwise fail before any handler could answer. Relies on ConnectionState's
    `parsers` table (discord.py 2.7, pinned)."""
    parsers: dict[str, Any] = bot._connection.parsers
    parse = parsers["INTERACTION_CREATE"]
    if getattr(parse, "completes_attachments", False):
        return

    def parse_interaction(data: dict[str, Any]) -> None:
        complete_attachments(data)
        parse(data)

    parse_interaction.completes_attachments = True  # type: ignore[attr-defined]
    parsers["INTERACTION_CREATE"] = parse_interaction


async def setup(bot: KlingBot) -> None:
    # Imported here, not at the top: load_extension runs this module afresh, but the private modules
    # are imported once, so each class (a cog, a button) exists once.
    from cogs.jobs._command import AnimateCog
    from cogs.jobs._delivery import DiscordReporter
    from cogs.jobs._menu import AnimateMessageCog
    from cogs.jobs._results import ResultsCog

    accept_partial_attachments(bot)
    # The runner reports through Discord messages this package owns; bot/app.py starts it with this.
    bot.reporter = DiscordReporter(
        bot, edit_interval=bot.settings.jobs.progress_edit_seconds, instance=await bot.instance_id()
    )
    await bot.add_cog(AnimateCog(bot))
    await bot.add_cog(ResultsCog(bot))
    await bot.add_cog(AnimateMessageCog(bot))
