"""What the bot needs from a server, and the link that adds it with exactly that."""

from __future__ import annotations

from urllib.parse import urlencode

import discord

# What the bot needs in the channel: see it, post, embed the progress, attach the video, find its posts.
REQUIRED_PERMISSIONS = discord.Permissions(
    view_channel=True, send_messages=True, embed_links=True, attach_files=True, read_message_history=True
)
# A forum showcase channel (cogs/showcase/) needs one more: the post's thread.
SHOWCASE_FORUM_PERMISSIONS = REQUIRED_PERMISSIONS | discord.Permissions(send_messages_in_threads=True)
# What the install link asks for: everything any feature needs.
INSTALL_PERMISSIONS = SHOWCASE_FORUM_PERMISSIONS
# `bot` adds the bot user; `applications.commands` lets it register its slash commands.
SCOPES = ("bot", "applications.commands")
AUTHORIZE_URL = "https://discord.com/oauth2/authorize"


def user_install_url(application_id: int) -> str:
    """The link a member follows to add the application to their own account (a user install:
    `integration_type=1`, scope applications.commands only, no bot and no permissions), e.g.
    `https://discord.com/oauth2/authorize?client_id=1&integration_type=1&scope=applications.commands`
    (source: https://discord.com/developers/docs/resources/application#installation-context)."""
    query = urlencode({"client_id": application_id, "integration_type": 1, "scope": "applications.commands"})
    return f"{AUTHORIZE_URL}?{query}"


def install_url(application_id: int, permissions: discord.Permissions = INSTALL_PERMISSIONS) -> str:
    """The standard OAuth2 link that adds the application to a server with `permissions`, e.g.
    `https://discord.com/oauth2/authorize?client_id=1&scope=bot+applications.commands&permissions=274878024704`
    (source: https://discord.com/developers/docs/topics/oauth2#bot-authorization-flow)."""
    query = urlencode(
        {"client_id": application_id, "scope": " ".join(SCOPES), "permissions": permissions.value}
    )
    return f"{AUTHORIZE_URL}?{query}"
