"""What a member wrote, made safe to show in the bot's own public embeds and posts.

A prompt is the member's text, but an embed the bot posts reads as the bot speaking: markdown in it
(headings, lists, bold, spoilers, masked links such as `[official site](https://evil.example)`) and
mentions must show as the characters typed, never as the bot's formatting, links or pings.
"""

from __future__ import annotations

import re

import discord

# Discord renders "1. item" as an ordered list; discord.py's escape_markdown leaves it.
# Indentation is spaces and tabs only: `\s*` would run across newlines from every line start (quadratic).
_ORDERED_LIST = re.compile(r"^([ \t]*\d+)\.(?=\s)", re.MULTILINE)
# A channel link renders as the channel's name; escape_mentions leaves it.
_CHANNEL = re.compile(r"<#(\d+)>")
# Also drawn, and left by both: a command mention (`</name sub:id>`, clickable), a link into the server's
# settings (`<id:browse>`) and a timestamp (`<t:…>`). Each lookahead stops at the next `<`: linear.
_DRAWN = re.compile(r"<(?=/[\w -]+:\d+>|id:\w+>|t:-?\d+(?::[tTdDfFR])?>)")
EMBED_DESCRIPTION_LIMIT = 4096  # Discord's limit on an embed's description
# More than any message can show. discord.py's escape_markdown is quadratic on some inputs (a run of
# newlines: 4.6 s for 40,000), so text is cut to this before any pattern reads it.
MAX_SHOWN_TEXT = 4096


def escape_member_text(text: str) -> str:
    """The text with its markdown escaped as discord.py's `escape_markdown` does (bold, italics,
    strike, spoilers, code, quotes, headings, `-` lists and masked links; bare URLs stay clickable and
    readable), ordered lists escaped too, and mentions (`@everyone`, `@here`, users, roles, channels),
    command mentions, server links and timestamps broken by a zero-width space so they neither ping nor
    render as links. Only the first MAX_SHOWN_TEXT characters are read (more cannot be shown)."""
    escaped = discord.utils.escape_markdown(text[:MAX_SHOWN_TEXT], ignore_links=True)
    escaped = _ORDERED_LIST.sub(r"\1\\.", escaped)
    escaped = discord.utils.escape_mentions(escaped)
    escaped = _DRAWN.sub("<\u200b", escaped)
    return _CHANNEL.sub("<#\u200b\\1>", escaped)


def clip(text: str, limit: int) -> str:
    """`text` within `limit` characters, ending in "…" when cut, never in a lone escaping backslash."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    trailing = len(cut) - len(cut.rstrip("\\"))
    if trailing % 2:
        cut = cut[:-1]
    return cut + "…"
