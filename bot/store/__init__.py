"""Every SQL statement of the bot lives in this package: one module per table family."""

from bot.store.db import Database

__all__ = ["Database"]
