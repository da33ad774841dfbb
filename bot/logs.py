"""Logging set-up that can never print a secret, and that names the job (and the API's request id)
on every line written while the bot works on a job."""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import sys
from typing import TextIO
from urllib.parse import quote

from pydantic import SecretStr

from bot.config import SECRET_FIELDS, CommonSettings
from bot.redact import redact_urls
from bot.store.db import url_password

REDACTED = "[redacted]"
TEXT_FORMAT = "%(asctime)s %(levelname)-8s %(name)s: %(ids)s%(message)s"

# The job (and its sunra request id) the current task works on. A task copies its parent's context when
# it is created, so a job's task and everything it spawns log with its ids, and no other task does.
_job_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("job_id", default=None)
_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def bind_job(job_id: int, request_id: str | None = None) -> None:
    """Every later log line of the current task (and of tasks it starts) carries these ids."""
    _job_id.set(job_id)
    _request_id.set(request_id)


def bind_request(request_id: str | None) -> None:
    """The API's request id, once known, for the job the current task works on."""
    _request_id.set(request_id)


class JobIds(logging.Filter):
    """Adds `job_id` and `request_id` (None when the line is about no job) and `ids`, their text form."""

    def filter(self, record: logging.LogRecord) -> bool:
        # A line may name its job itself (`extra={"job_id": ...}`); that wins over the task's.
        job_id = getattr(record, "job_id", None) or _job_id.get()
        request_id = getattr(record, "request_id", None) or _request_id.get()
        record.job_id, record.request_id = job_id, request_id
        parts = []
        if job_id is not None:
            parts.append(f"job={job_id}")
        if request_id:
            parts.append(f"req={request_id}")
        record.ids = f"[{' '.join(parts)}] " if parts else ""
        return True


class RedactSecrets(logging.Filter):
    """Replaces every configured secret, and every credential in a URL (bot/redact.py), in a record's
    final text and traceback, whatever logged it (discord.py and httpx included)."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self._secrets = [secret for secret in secrets if len(secret) >= 4]

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        # Credentials in URLs, whoever logged them: discord.py's 429 warnings name an interaction's
        # route with its live token, a proxy error its user:password@, a signed URL its signature.
        return redact_urls(text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        text = self._scrub(message)
        if record.exc_info and record.exc_info[1] is not None:
            # Format the traceback now so it can be scrubbed too.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = self._scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self._scrub(record.stack_info)
        if text != message:
            record.msg, record.args = text, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, job_id, request_id and,
    when there is one, the traceback as `exc`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "job_id": getattr(record, "job_id", None),
            "request_id": getattr(record, "request_id", None),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


class DropVoiceWarnings(logging.Filter):
    """discord.py warns at every start that voice libraries are missing; this bot never uses voice."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "voice will NOT be supported" not in record.getMessage()


class PoolRetriesInOneLine(logging.Filter):
    """asyncpg's pool warns with a whole traceback each time it fails to reopen a connection (about once
    a second while PostgreSQL is down or refuses this database): one line each, the error at its end."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "asyncpg.pool" and record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            reason = " ".join(str(error).split()) or type(error).__name__
            record.msg, record.args = f"{record.getMessage()} ({reason})", None
            record.exc_info, record.exc_text = None, None
        return True


def secret_values(settings: CommonSettings) -> list[str]:
    """The configured secrets' values (those that are set), for `RedactSecrets`."""
    found = [getattr(settings, name, None) for name in SECRET_FIELDS]
    values = [secret.get_secret_value() for secret in found if isinstance(secret, SecretStr)]
    # The database's password, however a message spells it: as in the URL, or percent-decoded.
    password = url_password(getattr(settings, "database_url", ""))
    if password and password.strip():
        values.extend({password, quote(password, safe="")})
    return values


def log_handler(settings: CommonSettings, stream: TextIO | None = None) -> logging.Handler:
    """The bot's handler: `LOG_FORMAT` text or JSON lines, job ids added, secrets removed."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT, defaults={"ids": ""}))
    handler.addFilter(JobIds())
    handler.addFilter(PoolRetriesInOneLine())  # before RedactSecrets, which formats tracebacks
    handler.addFilter(RedactSecrets(secret_values(settings)))
    handler.addFilter(DropVoiceWarnings())
    return handler


def configure_logging(settings: CommonSettings) -> None:
    root = logging.getLogger()
    root.handlers[:] = [log_handler(settings)]
    root.setLevel(settings.log_level)
    # One line per HTTP request is noise at INFO; failures are logged by our own code.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("discord.http").setLevel(max(logging.INFO, root.level))
