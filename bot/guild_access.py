"""The operator's allowlist of servers (`ALLOWED_GUILD_IDS`): which servers the bot may serve at all.

One rule for every way in: the command tree asks it before any command runs (bot/app.py), the bot asks
it to leave servers not on the list (at start and as soon as it is added), and the job runner asks it
again before it reserves or downloads anything, so a button or form pressed in such a server in the
seconds before the bot left starts nothing either. Direct messages are not a server: the operator's
`QUOTA__DM_CREDITS` governs them.
"""

from __future__ import annotations

from collections.abc import Collection

from bot.errors import InputRefused
from bot.i18n import _

NOT_ALLOWED = _(
    "Sorry, this bot is not available in this server: its operator runs it only in servers they chose. "
    "Nothing was started or charged."
)


def guild_allowed(guild_id: int | None, allowed: Collection[int]) -> bool:
    """True when the operator's list is empty (any server), the id is on it, or there is no server (a DM)."""
    return guild_id is None or not allowed or guild_id in allowed


class GuildNotAllowed(InputRefused):
    """A command from a server not on the operator's allowlist."""

    user_message = NOT_ALLOWED


def check_guild_allowed(guild_id: int | None, allowed: Collection[int]) -> None:
    """Raises GuildNotAllowed when the server is not on the operator's allowlist."""
    if not guild_allowed(guild_id, allowed):
        raise GuildNotAllowed()
