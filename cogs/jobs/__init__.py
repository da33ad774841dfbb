"""A member's job on Discord, from the command to the video's buttons. `setup` wires the package:

- `_command.py`  /animate (AnimateCog)
- `_menu.py`     the Animate message menu and its form
- `_submit.py`   the one way a new job is submitted (the command, the menu, Retry/Remix/Extend, fixes)
- `_cancel.py`   the Cancel button on a progress message
- `_delivery.py` the progress message, the final post and its fallbacks (DiscordReporter)
- `_results.py`  the buttons under a video (Retry, Remix, Extend, Delete) and their forms
- `_fixing.py`   the offer to fix a picture refused for its shape or size

The rules live in bot/ (bot/jobs/, bot/request.py, bot/results.py, bot/picture_fix.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.app import KlingBot


async def setup(bot: KlingBot) -> None:
    # Imported here, not at the top: load_extension runs this module afresh, but the private modules
    # are imported once, so each class (a cog, a button) exists once.
    from cogs.jobs._command import AnimateCog
    from cogs.jobs._menu import AnimateMessageCog
    from cogs.jobs._results import ResultsCog

    await bot.add_cog(AnimateCog(bot))
    await bot.add_cog(ResultsCog(bot))
    await bot.add_cog(AnimateMessageCog(bot))
