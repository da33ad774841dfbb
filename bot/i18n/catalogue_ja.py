"""ja catalogue: msgid (the English) → translation; see bot/i18n/__init__.py."""

from __future__ import annotations

MESSAGES: dict[str, str | tuple[str, str]] = {}
