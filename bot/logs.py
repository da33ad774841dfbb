"""Logging set-up that can never print a secret."""

from __future__ import annotations

import logging
import sys

from pydantic import SecretStr

from bot.config import SECRET_FIELDS, CommonSettings

REDACTED = "[redacted]"


class RedactSecrets(logging.Filter):
    """Replaces every configured secret in a record's final text, whatever logged it."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self._secrets = [secret for secret in secrets if len(secret) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        text = message
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        if record.exc_info and record.exc_info[1] is not None:
            # Format the traceback now so it can be scrubbed too.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            for secret in self._secrets:
                record.exc_text = record.exc_text.replace(secret, REDACTED)
        if text != message:
            record.msg, record.args = text, None
        return True


class DropVoiceWarnings(logging.Filter):
    """discord.py warns at every start that voice libraries are missing; this bot never uses voice."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "voice will NOT be supported" not in record.getMessage()


def secret_values(settings: CommonSettings) -> list[str]:
    """The configured secrets' values (those that are set), for `RedactSecrets`."""
    found = [getattr(settings, name, None) for name in SECRET_FIELDS]
    return [secret.get_secret_value() for secret in found if isinstance(secret, SecretStr)]


def configure_logging(settings: CommonSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-8s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secret_values(settings)))
    handler.addFilter(DropVoiceWarnings())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # One line per HTTP request is noise at INFO; failures are logged by our own code.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("discord.http").setLevel(max(logging.INFO, root.level))
