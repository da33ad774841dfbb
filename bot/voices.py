"""A server's voice library: names for Kling voice ids, picked in /animate's voice_1/voice_2.

Members refer to a voice in the prompt by its slot, `<<<voice_1>>>` or `<<<voice_2>>>` (Kling's own
syntax); the library only saves them from pasting ids. Lists are cached per server in memory, so
/animate's autocomplete and its checks before the acknowledgement read no database.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from bot.errors import InputRefused
from bot.guild_cache import GuildCache
from bot.i18n import _
from bot.store import voices as sql
from bot.store.db import Database
from bot.store.voices import VoiceRow

MAX_VOICES = 100
MAX_NAME = 32
MAX_VOICE_ID = 100
# Discord shows at most 25 autocomplete choices, each name at most 100 characters.
MAX_CHOICES = 25
_NAME = re.compile(r"^\w[\w .'-]*$")
_VOICE_ID = re.compile(r"^[^\s`]+$")  # shown inside a code span: no backtick may end it


def check_name(name: str) -> str:
    name = " ".join(name.split())
    if not name or len(name) > MAX_NAME or not _NAME.match(name):
        raise InputRefused(
            _(
                "A voice name has 1 to {n} characters: letters, digits, spaces, `.`, `'`, `-` or `_`.",
                n=MAX_NAME,
            )
        )
    return name


def check_voice_id(voice_id: str) -> str:
    voice_id = voice_id.strip()
    if not voice_id or len(voice_id) > MAX_VOICE_ID or not _VOICE_ID.match(voice_id):
        raise InputRefused(
            _("A voice id has 1 to {n} characters, with no spaces or backticks.", n=MAX_VOICE_ID)
        )
    return voice_id


def choice_label(voice: VoiceRow) -> str:
    return f"{voice.name} · {voice.voice_id}"[:100]


class VoiceLibrary:
    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock
        self._cache: GuildCache[int, list[VoiceRow]] = GuildCache()

    async def voices(self, guild_id: int | None) -> list[VoiceRow]:
        """The server's voices by name; none in DMs."""
        if guild_id is None:
            return []
        return await self._cache.get(guild_id, lambda: sql.list_voices(self.db, guild_id))

    async def add(self, guild_id: int, *, name: str, voice_id: str, actor_id: int) -> str | None:
        """Names a voice id; the id the name had before, if it is replaced. Raises InputRefused for a bad
        name or id, or a full library."""
        name, voice_id = check_name(name), check_voice_id(voice_id)
        known = await self.voices(guild_id)
        if len(known) >= MAX_VOICES and all(v.name.casefold() != name.casefold() for v in known):
            raise InputRefused(_("This server already has {n} voices. Remove one first.", n=MAX_VOICES))
        try:
            return await sql.put_voice(
                self.db, guild_id, name=name, voice_id=voice_id, actor_id=actor_id, at=self._clock()
            )
        finally:
            self._cache.invalidate(guild_id)

    async def remove(self, guild_id: int, *, name: str, actor_id: int) -> VoiceRow | None:
        try:
            return await sql.delete_voice(
                self.db, guild_id, name=name.strip(), actor_id=actor_id, at=self._clock()
            )
        finally:
            self._cache.invalidate(guild_id)

    async def resolve(self, guild_id: int | None, value: str | None) -> str | None:
        """What /animate sends as a voice id: a library name (any case) becomes its id; anything else is
        taken as a raw voice id."""
        if value is None or not value.strip():
            return value
        wanted = value.strip().casefold()
        for voice in await self.voices(guild_id):
            if voice.name.casefold() == wanted:
                return voice.voice_id
        return value.strip()

    async def suggest(self, guild_id: int | None, typed: str) -> list[VoiceRow]:
        """Up to 25 voices whose name or id contains what the member typed (any case)."""
        needle = typed.strip().casefold()
        found = [
            voice
            for voice in await self.voices(guild_id)
            if needle in voice.name.casefold() or needle in voice.voice_id.casefold()
        ]
        return found[:MAX_CHOICES]
