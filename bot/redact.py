"""Credentials in URLs, removed from any text before it is shown or logged (issue 19, item 7).

What a URL can carry that must not be read by whoever sees a log line or `kling-bot check`'s output:
``user:password@`` (a proxy, a database URL), a Discord webhook's or interaction's token in its path
(discord.py's own 429 warnings name the route, and an interaction's route carries a live token), and
signatures, keys and tokens in the query (signed storage URLs). Each pattern is linear: every repetition
is bounded, so a 1 MB line costs one pass.
"""

from __future__ import annotations

import re

REDACTED = "[redacted]"

# scheme://user:password@ (the user name stays readable) or scheme://token@
# (a password may hold an unencoded `@`: everything up to the last `@` before the host goes)
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]{0,30}://)(?:([^\s/?#@:]{1,256}):)?[^\s/?#]{1,512}@")
# Discord: /webhooks/<id>/<token>..., /interactions/<id>/<token>/callback
_DISCORD_TOKEN = re.compile(r"(/(?:webhooks|interactions)/\d{1,25}/)[A-Za-z0-9_.\-]{8,512}")
# ?sig=..., &X-Amz-Signature=..., &token=..., &key=..., &access_token=..., &hm=... (Discord's CDN)
_SECRET_QUERY = re.compile(
    r"(?i)([?&;](?:[a-z0-9_.\-]{0,40}(?:sig|signature|token|key|secret|credential|password|auth)"
    r"[a-z0-9_.\-]{0,40}|hm)=)[^&\s\"'<>#]{1,4096}"
)


def redact_urls(text: str) -> str:
    """``text`` with every URL credential replaced by [redacted]; the rest (host, path) stays readable."""
    if "/" not in text and "=" not in text:
        return text  # nothing a URL credential could be in: the common case costs one scan
    text = _USERINFO.sub(lambda m: f"{m.group(1)}{m.group(2) + ':' if m.group(2) else ''}{REDACTED}@", text)
    text = _DISCORD_TOKEN.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    return _SECRET_QUERY.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
