"""Errors a member may see.

Every error raised on purpose inside the bot carries the sentence a member reads (`user_message`) and
whether trying again later may help (`retryable`). Cogs show `user_message` as is; logs get `str(err)`,
which never contains a secret.
"""

from __future__ import annotations

from bot.i18n import _


class BotError(Exception):
    """Base of every error whose text is fit for a member to read."""

    user_message: str = _("Something went wrong on our side.")
    retryable: bool = False

    def __init__(self, user_message: str | None = None, *, retryable: bool | None = None) -> None:
        if user_message is not None:
            self.user_message = user_message
        if retryable is not None:
            self.retryable = retryable
        super().__init__(self.user_message)


class InputRefused(BotError):
    """The member's own input cannot be used; nothing was charged or submitted."""


class ServiceUnavailable(BotError):
    """The bot cannot take new jobs right now (bad API key, empty balance, shutting down)."""

    retryable = True
