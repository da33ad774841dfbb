"""Command names, descriptions and option names in the member's language: discord.py's Translator fed
from the message catalogues (bot/i18n/). Discord shows each member their client's language and falls
back to the English given in the code."""

from __future__ import annotations

import discord
from discord import app_commands

from bot.i18n import is_name, translate

# Discord's limit on a description's and a choice name's length, localized or not
# (https://discord.com/developers/docs/interactions/application-commands).
MAX_TEXT = 100
_NAMED = (
    app_commands.TranslationContextLocation.command_name,
    app_commands.TranslationContextLocation.group_name,
    app_commands.TranslationContextLocation.parameter_name,
)


def valid_name(text: str) -> bool:
    """Discord's rule for a chat-input command's or option's name: 1-32 letters, digits, `-` or `_`, lower
    case where the script has case (its regex also admits Devanagari and Thai marks, which no catalogue
    here uses): https://discord.com/developers/docs/interactions/application-commands"""
    return 1 <= len(text) <= 32 and text == text.lower() and all(ch.isalnum() or ch in "-_" for ch in text)


class CatalogueTranslator(app_commands.Translator):
    """Set on the tree in setup_hook; the command sync sends what it returns as localizations."""

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        if locale.value.startswith("en"):
            return None
        menu = isinstance(context.data, app_commands.ContextMenu)
        chat_input_name = context.location in _NAMED and not menu
        key = "/" + string.message if is_name(string.message) and not menu else string.message
        text = translate(key, locale)
        if text is None:
            return None
        if chat_input_name and not valid_name(text):
            return None  # Discord would refuse the whole sync over one bad name
        if len(text) > MAX_TEXT:
            return None  # the same for a description or choice name past Discord's limit
        return text
