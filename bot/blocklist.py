"""A server's prompt block list: whole words and simple wildcards, checked before anything is charged.

A pattern is one or more words; `*` stands for any run of letters or digits (`gor*` blocks "gore" and
"gory"), `?` for exactly one. Words match whole (`cat` does not block "category"), without case, after
Unicode normalisation (NFKC) and with invisible format characters removed, so "ＣＡＴ" or "c\u200bat" do
not slip through. Only the prompt is checked: a negative prompt names what to avoid and often has to
name exactly the words a server blocks.

Lists are cached per server in memory, so the check before the acknowledgement reads no database.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from bot.errors import InputRefused
from bot.guild_cache import GuildCache
from bot.store import blocklist as sql
from bot.store.db import Database

MAX_PATTERNS = 500
MAX_PATTERN = 100


# Unicode's Default_Ignorable_Code_Point characters that are not format (Cf) characters: drawn as
# nothing (variation selectors, the combining grapheme joiner) or as a blank (Hangul fillers).
_IGNORABLE = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u3164\ufe00-\ufe0f\uffa0\U000e0100-\U000e01ef]"
)


def normalise(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _IGNORABLE.sub("", "".join(ch for ch in folded if unicodedata.category(ch) != "Cf"))


def check_pattern(pattern: str) -> str:
    """The pattern as it is stored: words separated by single spaces. Raises InputRefused when it is
    empty, too long, or has no letter or digit (a lone `*` would block every prompt)."""
    cleaned = " ".join(pattern.split())
    if not cleaned or len(cleaned) > MAX_PATTERN:
        raise InputRefused(f"A blocked word or phrase has 1 to {MAX_PATTERN} characters.")
    if not any(ch.isalnum() for ch in cleaned):
        raise InputRefused("A blocked pattern needs at least one letter or digit besides `*` and `?`.")
    return cleaned


def _word_regex(word: str) -> str:
    """One pattern word as a regex. Each text between two `*`s is matched where it first fits, inside an
    atomic group (as fnmatch does): that is always right for a glob, and a chain of backtracking `\\w*`s
    would take time exponential in the number of `*`s on a long word."""

    def fixed(text: str) -> str:
        return "".join(r"\w" if ch == "?" else re.escape(ch) for ch in text)

    if "*" not in word:
        return fixed(word)
    first, *middle, last = word.split("*")
    return fixed(first) + "".join(rf"(?>\w*?{fixed(m)})" for m in middle if m) + r"\w*" + fixed(last)


def compile_pattern(pattern: str) -> re.Pattern[str]:
    words = [_word_regex(word) for word in normalise(pattern).split()]
    return re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)")


@dataclass(frozen=True, slots=True)
class Rule:
    pattern: str
    regex: re.Pattern[str]


class PromptBlocked(InputRefused):
    """A prompt matched the server's block list; `pattern` is the entry it matched."""

    def __init__(self, found: str, pattern: str) -> None:
        super().__init__(
            f"Your prompt contains “{found}”, which this server does not allow in prompts. "
            "Please rephrase it; nothing was charged."
        )
        self.pattern = pattern


class PromptFilter:
    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock
        self._cache: GuildCache[int, list[Rule]] = GuildCache()

    async def patterns(self, guild_id: int) -> list[str]:
        return [rule.pattern for rule in await self._rules(guild_id)]

    async def _rules(self, guild_id: int) -> list[Rule]:
        async def load() -> list[Rule]:
            return [Rule(p, compile_pattern(p)) for p in await sql.list_patterns(self.db, guild_id)]

        return await self._cache.get(guild_id, load)

    async def check(self, guild_id: int | None, prompt: str) -> None:
        """Raises PromptBlocked when the prompt matches one of the server's patterns."""
        if guild_id is None:
            return
        rules = await self._rules(guild_id)
        if not rules:
            return
        text = normalise(prompt)
        for rule in rules:
            match = rule.regex.search(text)
            if match is not None:
                raise PromptBlocked(match.group(0), rule.pattern)

    async def add(self, guild_id: int, pattern: str, *, actor_id: int) -> tuple[str, bool]:
        """(the stored pattern, whether it is new). Raises InputRefused for a bad pattern or a full list."""
        pattern = check_pattern(pattern)
        if len(await self._rules(guild_id)) >= MAX_PATTERNS:
            raise InputRefused(f"This server's block list already has {MAX_PATTERNS} entries.")
        try:
            added = await sql.add_pattern(
                self.db, guild_id, pattern=pattern, actor_id=actor_id, at=self._clock()
            )
        finally:
            self._cache.invalidate(guild_id)
        return pattern, added

    async def remove(self, guild_id: int, pattern: str, *, actor_id: int) -> bool:
        try:
            return await sql.remove_pattern(
                self.db, guild_id, pattern=" ".join(pattern.split()), actor_id=actor_id, at=self._clock()
            )
        finally:
            self._cache.invalidate(guild_id)
