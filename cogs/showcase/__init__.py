"""Showcases on Discord: the admin's settings, posts and votes, the gallery/history/top pages, and the
block list's admin commands. `setup` wires the package:

- `_cog.py`   /showcase-admin (with its blocklist group), /showcase, /gallery, /history, /top and the
              Showcase, Vote and page buttons (ShowcaseCog)
- `_post.py`  posting a showcase in a text or forum channel, its vote label (ShowcasePublisher)
- `_pages.py` the gallery, history and top embeds and their page buttons
- `_weekly.py` the weekly post of the week's top videos (WeeklyPost)

The rules live in bot/showcase.py and bot/blocklist.py; the SQL in bot/store/showcases.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.app import KlingBot


async def setup(bot: KlingBot) -> None:
    # Imported here so the cog class exists once however often the extension is (re)loaded.
    from cogs.showcase._cog import ShowcaseCog

    await bot.add_cog(ShowcaseCog(bot))
