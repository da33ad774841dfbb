"""The kit every cog shares: private replies, no mentions, refusals told, a manager-only command group,
and the one answer to an unexpected error for every command, button and form.

Cogs import from here and from bot/, never from one another (as RoboDanny's cogs/utils/ does).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, Self, TypedDict

import discord
from discord import app_commands

from bot.command_access import check_job_place
from bot.errors import BotError
from bot.i18n import _, render
from bot.store.jobs import JobRow

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()
# Discord stops accepting this interaction's token (50027) or knows it no more (10062).
DEAD_TOKEN_CODES = (50027, 10062)
Interaction = discord.Interaction[Any]


def for_member(interaction: Interaction, text: str) -> str:
    """A sentence in the member's language (the interaction's locale); plain text as it is."""
    return render(text, interaction.locale)


def for_channel(interaction: Interaction, text: str) -> str:
    """A sentence everyone in the channel reads: the server's preferred language, else English."""
    return render(text, interaction.guild_locale)


def public_locale(interaction: Interaction) -> str | None:
    """The language of what others read about this use (a job's cards, a public page): the server's
    preferred locale where the server added the bot, else the member's own (a DM, a member's install in a
    server without the bot, where the member is the audience). A Discord locale's value, e.g. "de"."""
    locale = interaction.guild_locale if interaction.is_guild_integration() else interaction.locale
    return None if locale is None else locale.value


def installed_guild_id(interaction: Interaction) -> int | None:
    """The server this use is under: its id when the server added the bot, else None (a DM, a group DM,
    a member's own install used in a server without the bot, where server rules and quotas do not
    apply and the allowance for use outside servers does)."""
    return interaction.guild_id if interaction.is_guild_integration() else None


# The custom_id templates of every form (modal) a feature handles by its id, registered by the feature's
# cog as it loads (`handles_forms`): cogs/unanswered.py answers a `kling:` form that matches none of them.
FORM_IDS: set[re.Pattern[str]] = set()


def handles_forms(*templates: re.Pattern[str]) -> None:
    """Registers form custom_id templates (matched whole) as handled by a loaded cog."""
    FORM_IDS.update(templates)


def job_here(interaction: Interaction, job: JobRow) -> None:
    """Raises JobElsewhere (bot/command_access.py) when a press or form names a job of another server
    or channel than the one it came from."""
    check_job_place(
        job_guild_id=job.guild_id,
        job_channel_id=job.channel_id,
        job_user_id=job.user_id,
        # A member's own install in a server without the bot is no server's use: there, as in a DM, only
        # the job's own member may act on it (its posts reach nobody else through the bot).
        guild_id=installed_guild_id(interaction),
        channel_id=interaction.channel_id,
        user_id=interaction.user.id,
    )


async def say_privately(interaction: Interaction, text: str) -> None:
    """Answers the member alone, in their language: first reply, or an edit of the deferred one; a dead
    token is ignored."""
    text = for_member(interaction, text)
    try:
        if interaction.response.is_done():
            await interaction.edit_original_response(content=text, allowed_mentions=NO_MENTIONS)
        else:
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
    except discord.HTTPException as error:
        if error.code not in DEAD_TOKEN_CODES:
            raise
        log.info("interaction %s: token no longer valid (%s); not retrying", interaction.id, error.code)


UNEXPECTED = _("Something went wrong inside the bot; nothing was charged. Please try again.")


async def answer_unexpected(interaction: Interaction, error: BaseException, what: str) -> None:
    """The one answer to an error nobody expected, wherever it happened (a command, a button, a form):
    its traceback goes to the log, the member gets a private sentence instead of "This interaction
    failed", and an answer Discord refuses (the token expired) is logged, never raised."""
    log.error("%s failed (interaction %s)", what, interaction.id, exc_info=error)
    try:
        await say_privately(interaction, UNEXPECTED)
    except discord.HTTPException as failure:
        log.info("interaction %s: cannot tell the member (%s)", interaction.id, failure.code)


async def answering(interaction: Interaction, work: Awaitable[None], what: str) -> None:
    """Runs a press or a form; a bug still ends in a private sentence (`answer_unexpected`)."""
    try:
        await work
    except Exception as error:
        await answer_unexpected(interaction, error, what)


async def on_app_command_error(interaction: Interaction, error: app_commands.AppCommandError) -> None:
    """The command tree's error handler: a refusal raised on purpose (BotError) is the member's private
    answer, a failed check was told where it failed, and anything else gets `answer_unexpected`."""
    cause = error.original if isinstance(error, app_commands.CommandInvokeError) else error
    if isinstance(cause, BotError):
        try:
            await reply(interaction, cause.user_message)
        except discord.HTTPException as failure:
            log.info("interaction %s: cannot tell the member (%s)", interaction.id, failure.code)
    elif not isinstance(error, app_commands.CheckFailure):
        command = interaction.command.qualified_name if interaction.command else "?"
        await answer_unexpected(interaction, cause, f"/{command}")


async def on_tree_error(interaction: Interaction, error: app_commands.AppCommandError) -> None:
    """The command tree's `on_error`: `on_app_command_error`, unless the command's own handler (a
    ManagerGroup's) already answered, as discord.py's default handler also leaves those alone."""
    command = interaction.command
    if command is not None and command._has_any_error_handlers():
        return
    await on_app_command_error(interaction, error)


async def reply(interaction: Interaction, text: str, *, file: discord.File | None = None) -> None:
    """Answers privately with a new message (a follow-up once answered); pings nobody even when the text
    mentions a member or a role. A Message is said in the member's language."""
    text = for_member(interaction, text)
    extra: dict[str, Any] = {} if file is None else {"file": file}
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS, **extra)
    else:
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS, **extra)


class Acting(TypedDict):
    guild_id: int
    actor_id: int


def acting(interaction: Interaction) -> Acting:
    """Who changes what in a ManagerGroup command, as the services take it: the server and the manager."""
    assert interaction.guild_id is not None  # ManagerGroup.interaction_check refused anywhere else
    return {"guild_id": interaction.guild_id, "actor_id": interaction.user.id}


class ManagerGroup(app_commands.Group):
    """A command group only members with Manage Server may use, in a server. Discord hides it from others
    by default, but a server can change who sees a command, so the bot checks again itself, once for
    every command of the group (a subgroup must be a ManagerGroup too: discord.py asks only the direct
    parent). A refusal the service raises (BotError: a bad time zone, say) is the admin's private answer,
    not an error to log (`on_app_command_error` says it)."""

    def __init__(
        self,
        *,
        name: str,
        description: str | app_commands.locale_str,
        parent: app_commands.Group | None = None,
    ) -> None:
        if parent is not None:  # a subgroup inherits where it is offered and to whom
            super().__init__(name=name, description=description, parent=parent)
            return
        super().__init__(
            name=name,
            description=description,
            guild_only=True,
            allowed_contexts=app_commands.AppCommandContext(guild=True),
            default_permissions=discord.Permissions(manage_guild=True),
        )

    def root_name(self) -> str:
        group: app_commands.Group = self
        while group.parent is not None:
            group = group.parent
        return group.name

    async def interaction_check(self, interaction: Interaction, /) -> bool:
        if interaction.guild_id is not None and interaction.permissions.manage_guild:
            return True
        await reply(
            interaction,
            _("You need the **Manage Server** permission to use /{command}.", command=self.root_name()),
        )
        return False

    async def on_error(self, interaction: Interaction, error: app_commands.AppCommandError, /) -> None:
        # Here as well as on the tree, so the group answers in any bot that loads it.
        await on_app_command_error(interaction, error)


# The largest id the database stores (a signed 64-bit integer, SQLite's and PostgreSQL's bigint).
MAX_STORED_ID = 2**63 - 1


def stored_id(digits: str) -> int:
    """A custom_id's number as an id to look up. Any client can send any custom_id (up to 100
    characters): a number larger than a database holds names nothing, so it reads as 0, which no row has,
    rather than raising OverflowError in the store."""
    number = int(digits)
    return number if number <= MAX_STORED_ID else 0


class IdButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=r"kling:[a-z]+:(?P<number>\d+)"
):
    """A persistent button whose custom_id is `kling:<kind>:<number>` (a job's or a showcase's id), so a
    press works after any restart: `class CancelButton(IdButton, kind="cancel")`. The id is built and
    parsed here and nowhere else; a subclass gives its look (label, emoji, style) and its callback.
    A subclass's callback and interaction_check answer through `answer_unexpected` when they fail, so no
    press ends in "This interaction failed" (discord.py would only log it)."""

    kind = ""
    label: str | None = None
    emoji: str | None = None
    style = discord.ButtonStyle.secondary

    def __init_subclass__(cls, *, kind: str = "", template: str | None = None) -> None:
        cls.kind = kind or cls.kind
        pattern = template or rf"kling:{re.escape(cls.kind) or '[a-z]+'}:(?P<number>\d+)"
        super().__init_subclass__(template=pattern)
        if "callback" in cls.__dict__:
            setattr(cls, "callback", _answered(cls.__dict__["callback"]))  # noqa: B010
        if "interaction_check" in cls.__dict__:
            setattr(cls, "interaction_check", _checked(cls.__dict__["interaction_check"]))  # noqa: B010

    def __init__(self, number: int, *, label: str | None = None, locale: object = None) -> None:
        """`locale`: the language of the label (a discord.Locale; for a public message, the server's
        preferred locale; None: English)."""
        shown = label or self.label
        button: discord.ui.Button[discord.ui.View] = discord.ui.Button(
            label=render(shown, locale) if shown else None,
            emoji=self.emoji,
            style=self.style,
            custom_id=f"kling:{self.kind}:{number}",
        )
        super().__init__(button)
        self.number = number

    @classmethod
    async def from_custom_id(
        cls, interaction: Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Self:
        return cls(stored_id(match["number"]))


Handler = Callable[[Any, Interaction], Awaitable[Any]]


def _answered(callback: Handler) -> Handler:
    @functools.wraps(callback)
    async def run(self: Any, interaction: Interaction) -> None:
        custom_id = dict(interaction.data or {}).get("custom_id", "?")
        await answering(interaction, callback(self, interaction), f"button {custom_id}")

    return run


def _checked(check: Handler) -> Handler:
    @functools.wraps(check)
    async def run(self: Any, interaction: Interaction) -> bool:
        try:
            return bool(await check(self, interaction))
        except Exception as error:
            custom_id = dict(interaction.data or {}).get("custom_id", "?")
            await answer_unexpected(interaction, error, f"button {custom_id}")
            return False

    return run
