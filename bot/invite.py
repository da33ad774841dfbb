"""What the bot needs from a server, and the link that adds it with exactly that."""

from __future__ import annotations

from urllib.parse import urlencode

import discord

# What the bot needs in the channel: see it, post, embed the progress, attach the video, find its posts.
REQUIRED_PERMISSIONS = discord.Permissions(
    view_channel=True, send_messages=True, embed_links=True, attach_files=True, read_message_history=True
)
# `bot` adds the bot user; `applications.commands` lets it register its slash commands.
SCOPES = ("bot", "applications.commands")
AUTHORIZE_URL = "https://discord.com/oauth2/authorize"


def install_url(application_id: int, permissions: discord.Permissions = REQUIRED_PERMISSIONS) -> str:
    """The standard OAuth2 link that adds the application to a server with `permissions`, e.g.
    `https://discord.com/oauth2/authorize?client_id=1&scope=bot+applications.commands&permissions=117760`
    (source: https://discord.com/developers/docs/topics/oauth2#bot-authorization-flow)."""
    query = urlencode(
        {"client_id": application_id, "scope": " ".join(SCOPES), "permissions": permissions.value}
    )
    return f"{AUTHORIZE_URL}?{query}"
