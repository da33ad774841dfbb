"""The interaction's own webhook, for a job the bot cannot post in the channel of (a DM, a group DM, a
member's own install in a server without the bot): its progress card is a followup, edited as the job
moves, and becomes the result card with the video file; nothing is ever posted in that channel.

The token is a credential (it lets anyone post as the app in that channel for 15 minutes), so it is kept
in memory only, never in the database: a restart forgets it, and the job's result then goes to the
member's DM (cogs/jobs/_delivery.py), as it does once the token has expired.

Discord's rules (https://discord.com/developers/docs/interactions/receiving-and-responding): a token is
valid for 15 minutes from the interaction; after a deferral the first followup fills the deferred
message (taking its ephemerality), so the progress followup waits until the private answer is in it;
an interaction of an app the member installed, in a server without it, takes at most 5 followups.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import discord

log = logging.getLogger(__name__)

TOKEN_SECONDS = 15 * 60
# A request sent this close to the token's end may land after it: the DM is used from then on.
TOKEN_MARGIN_SECONDS = 30.0
MAX_FOLLOWUPS = 5
# How long the progress followup waits for the private answer to fill the deferred message.
ANSWER_WAIT_SECONDS = 10.0
# The token is no longer valid (50027), or Discord knows the interaction or its webhook no more.
DEAD_TOKEN_CODES = (50027, 10015, 10062)
# This interaction has had its 5 followups.
TOO_MANY_FOLLOWUPS = 40094


class RouteClosed(Exception):
    """The job's interaction can no longer be used: unknown to this process (a restart), expired, dead
    or out of followups. The DM is next."""


@dataclass
class _Route:
    webhook: discord.Webhook
    expires_at: float  # wall clock, seconds
    locale: discord.Locale
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    followups: int = 0
    dead: bool = False


class InteractionRoutes:
    """Per job: the interaction that made it, while its token may be used.

    `token_seconds` is how long after the interaction's creation the token is used (Discord's 15
    minutes less a margin; tests shorten it along with the fake Discord's `token_lifetime`)."""

    def __init__(
        self,
        *,
        token_seconds: float = TOKEN_SECONDS - TOKEN_MARGIN_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token_seconds = token_seconds
        self._clock = clock
        self._routes: dict[int, _Route] = {}

    def remember(self, job_id: int, interaction: discord.Interaction[Any]) -> None:
        """Keeps the interaction's webhook for the job; routes past their token's end are dropped."""
        now = self._clock()
        for known in [key for key, route in self._routes.items() if route.expires_at <= now]:
            del self._routes[known]
        expires_at = interaction.created_at.timestamp() + self.token_seconds
        self._routes[job_id] = _Route(interaction.followup, expires_at, interaction.locale)

    def answered(self, job_id: int) -> None:
        """The member's private answer is in the deferred message: followups are new messages now."""
        route = self._routes.get(job_id)
        if route is not None:
            route.answered.set()

    def locale(self, job_id: int) -> discord.Locale | None:
        """The member's language, known while this process remembers the job (for the DM's note)."""
        route = self._routes.get(job_id)
        return None if route is None else route.locale

    def live(self, job_id: int) -> bool:
        route = self._routes.get(job_id)
        return route is not None and not route.dead and self._clock() < route.expires_at

    def forget(self, job_id: int) -> None:
        self._routes.pop(job_id, None)

    def _route(self, job_id: int) -> _Route:
        route = self._routes.get(job_id)
        if route is None or route.dead or self._clock() >= route.expires_at:
            raise RouteClosed()
        return route

    @contextlib.contextmanager
    def _calling(self, job_id: int, file: discord.File | None) -> Iterator[None]:
        """One webhook request: a refusal that closes the route raises RouteClosed; the file is closed."""
        try:
            yield
        except discord.HTTPException as error:
            self._failed(job_id, error)
            raise
        finally:
            if file is not None:
                file.close()

    def _failed(self, job_id: int, error: discord.HTTPException) -> None:
        if error.code in (*DEAD_TOKEN_CODES, TOO_MANY_FOLLOWUPS) or error.status == 401:
            route = self._routes.get(job_id)
            if route is not None:
                route.dead = True
            raise RouteClosed() from error

    async def post(
        self,
        job_id: int,
        *,
        allowed_mentions: discord.AllowedMentions,
        view: discord.ui.LayoutView | None = None,
        video: Path | None = None,
        filename: str = "",
        content: str | None = None,
        embed: discord.Embed | None = None,
    ) -> int:
        """A new public followup (a card, with the video when given, or text and an embed); its message
        id. Raises RouteClosed (use the DM) or Discord's refusal (discord.HTTPException)."""
        route = self._route(job_id)
        if route.followups >= MAX_FOLLOWUPS:
            raise RouteClosed()
        try:
            await asyncio.wait_for(route.answered.wait(), ANSWER_WAIT_SECONDS)
        except TimeoutError:
            log.info("job %s: the private answer did not come; posting the followup anyway", job_id)
        route = self._route(job_id)
        file = discord.File(video, filename=filename) if video is not None else None
        route.followups += 1  # counted when sent: a lost answer may still have made the message
        extra: dict[str, Any] = {}
        if view is not None:
            extra["view"] = view
        if embed is not None:
            extra["embed"] = embed
        if file is not None:
            extra["file"] = file
        with self._calling(job_id, file):
            message = await route.webhook.send(
                content if content is not None else discord.utils.MISSING,
                wait=True,
                allowed_mentions=allowed_mentions,
                **extra,
            )
        return message.id

    async def edit(
        self,
        job_id: int,
        message_id: int,
        *,
        view: discord.ui.LayoutView,
        allowed_mentions: discord.AllowedMentions,
        video: Path | None = None,
        filename: str = "",
    ) -> None:
        """Edits a message of the interaction into `view` (with the video uploaded, replacing any file).
        An edit made twice is one message: what makes the result's delivery exactly once while the
        token lives. Raises RouteClosed or discord.HTTPException."""
        route = self._route(job_id)
        file = discord.File(video, filename=filename) if video is not None else None
        extra: dict[str, Any] = {} if file is None else {"attachments": [file]}
        with self._calling(job_id, file):
            await route.webhook.edit_message(
                message_id, view=view, allowed_mentions=allowed_mentions, **extra
            )

    async def fetch(self, job_id: int, message_id: int) -> discord.Message | None:
        """The interaction's message as Discord has it now (None: deleted), read through the webhook.
        Raises RouteClosed when the token can no longer be used."""
        route = self._route(job_id)
        try:
            return await route.webhook.fetch_message(message_id)
        except discord.NotFound:
            return None
        except discord.HTTPException as error:
            self._failed(job_id, error)
            raise
