"""The command tree's Discord side, loaded first: command names in each member's language (the
catalogue translator) and the one answer to a failed command or menu (`on_tree_error`: a refusal is told,
anything unexpected logged and answered privately). Set here so bot/app.py needs nothing from cogs/.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cogs._translator import CatalogueTranslator
from cogs._ui import on_tree_error

if TYPE_CHECKING:
    from bot.app import KlingBot


async def setup(bot: KlingBot) -> None:
    await bot.tree.set_translator(CatalogueTranslator())
    bot.tree.error(on_tree_error)
