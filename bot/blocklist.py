"""A server's prompt block list: whole words and simple wildcards, checked before anything is charged.

A pattern is one or more words; `*` stands for any run of letters or digits (`gor*` blocks "gore" and
"gory"), `?` for exactly one. Words match whole (`cat` does not block "category", `gore` lets "gorey",
"forge" and "ogre" through), without case. Look-alikes do not get around it:

- every character is folded to its Latin skeleton: compatibility forms (full-width "ＣＡＴ",
  mathematical "𝐜𝐚𝐭") by NFKC/NFKD, combining marks stripped ("góre", "g̵ore" → "gore"), invisible
  characters removed, and letters of other scripts that look like Latin ones (Cyrillic "о", Greek "ο")
  mapped through Unicode's confusables data (UTS #39, https://www.unicode.org/reports/tr39/, as shipped
  by the confusable-homoglyphs package);
- digits, `_` and punctuation are no boundary inside a word: the prompt is read four ways, and a
  pattern blocks it when it matches any of them: with them as spaces ("gore2", "gore_", "blood-gore"),
  with them removed ("go-re", "g.o.r.e", "go2re"), and with the digits and signs that look like letters
  or are written for them read as those letters ("g0re", "ki||", "g0re-fest", "b4nn3d", "@ss", "$3x";
  1, | and ! as l, and in a reading of their own as i: "n4z1", "k1ll") and the others as spaces or
  removed;
- letters written apart are one word: in each reading, a run of three or more one-letter words is read
  joined too ("b a d", "b . a . d" → "bad"; two, as in "il y a", are ordinary text), and a listed
  word without wildcards is also found written in three or more chunks of at most three letters in a
  row ("b an ned", "ba nn ed", "b a nn e d" → "banned"). Two chunks are not enough: "go re", "pen is"
  are ordinary text;
- a letter stretched is the letter: a word matches a listed word when, letter run by letter run, each
  run is as long as the listed one or, for a letter, three or more long and no shorter ("baaaannnnned"
  and "bbbaaannnnneeeddd" → "banned", "goooood" → "good" and "god"). Doubled letters are ordinary
  spelling and stay ("good" does not block `god`, "but" does not block `butt`, "as" not `ass`). A
  wildcard pattern reads each stretched run as one letter and as two ("goooory" → `gor*`).

Only the prompt is checked: a negative prompt names what to avoid and often has to name exactly the
words a server blocks.

Cost: patterns without wildcards are looked up collapsed (each run of a letter as one) in a dict, with
the prompt's words and runs of chunks (at most as many chunks as the longest listed word has
letters), so their number does not matter; wildcard patterns are regular expressions whose every `*`
is atomic (linear in the prompt's length), and a server may have at most MAX_WILDCARD_PATTERNS of them.
The worst case at 500 entries is measured by benchmarks/bench_blocklist.py. Lists are cached per server
in memory, so the check before the acknowledgement reads no database.
"""

from __future__ import annotations

import functools
import re
import string
import time
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from confusable_homoglyphs import confusables

from bot.errors import InputRefused
from bot.guild_cache import GuildCache
from bot.i18n import _
from bot.store import blocklist as sql
from bot.store.db import Database

MAX_PATTERNS = 500
MAX_PATTERN = 100
# Wildcard patterns are the only ones whose cost grows with their number (see bench_blocklist.py).
MAX_WILDCARD_PATTERNS = 20
WILDCARDS = "*?"


# Unicode's Default_Ignorable_Code_Point characters that are not format (Cf) characters: drawn as
# nothing (variation selectors, the combining grapheme joiner) or as a blank (Hangul fillers).
_IGNORABLE = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u3164\ufe00-\ufe0f\uffa0\U000e0100-\U000e01ef]"
)
_DROPPED_CATEGORIES = frozenset({"Cf", "Mn", "Me"})  # format characters, combining marks


def normalise(text: str) -> str:
    """NFKC, casefolded, without invisible characters: what a reader sees, for "is this text empty?"."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _IGNORABLE.sub("", "".join(ch for ch in folded if unicodedata.category(ch) != "Cf"))


@functools.cache
def _look_alikes() -> dict[str, str]:
    """Every character outside the ASCII letters that UTS #39's confusables.txt pairs with ASCII
    letters (Cyrillic "о" → "o", Latin script "ɡ" → "g", "0" → "o", "|" → "l"): about 1,500 of its
    9,600 characters, read once into a dict so a character never seen before costs a lookup. The
    package keeps the pairs both ways (it is meant to ask "what looks like this?"); a character's ASCII
    partner is its prototype, since confusables.txt never maps an ASCII letter elsewhere."""
    table = {}
    for ch, glyphs in confusables.confusables_data.items():
        if len(ch) != 1 or (ch.isascii() and ch.isalpha()):
            continue
        for glyph in glyphs:
            target = str(glyph["c"]).casefold()
            if target.isascii() and target.isalpha():
                table[ch] = target
                break
    return table


@functools.lru_cache(maxsize=65_536)  # at most a few MB
def fold_char(ch: str) -> str:
    """One character's skeleton: compatibility decomposition (NFKD), combining marks and invisible
    characters removed, casefolded, and a letter of another script that looks like Latin letters
    replaced by them. ASCII digits and signs stay as they are (`_LEET` reads them as letters)."""
    if ch.isascii():
        return ch.lower()
    out = []
    for part in unicodedata.normalize("NFKD", ch).casefold():
        if unicodedata.category(part) in _DROPPED_CATEGORIES or _IGNORABLE.match(part):
            continue
        if not part.isascii():
            part = _look_alikes().get(part, part)
        out.append(part)
    return "".join(out)


def fold(text: str) -> str:
    if text.isascii():
        return text.lower()
    return "".join(map(fold_char, text))


# The digits and signs written for letters that confusables.txt does not pair with them (it pairs shapes
# only): the common "leet" substitutions, "b4nn3d", "@ss", "$3x".
_SUBSTITUTES = {"3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
# ASCII digits and signs that look like letters (0 → o, 1 → l, | → l), from the same data, and those.
_LEET = str.maketrans(
    {
        **{
            ch: look
            for ch in string.digits + string.punctuation
            if ch not in WILDCARDS and (look := _look_alikes().get(ch)) is not None
        },
        **_SUBSTITUTES,
    }
)
# 1, | and ! also stand for i ("n4z1", "k1ll"): a reading of its own, made only when the prompt has one.
_AS_I = str.maketrans({"1": "i", "|": "i", "!": "i"})
_NOT_LETTER = re.compile(r"[\W\d_]+")  # digits, `_`, punctuation, symbols (and spaces)
_JOINER = re.compile(r"[^\w\s]+|[\d_]+")  # the same, spaces excepted
_SIGN = re.compile(r"[^\w\s]+|_+")  # punctuation, symbols and `_`


def _spaced(text: str) -> str:
    return " ".join(text.split())


# In a reading (words of one or more characters separated by single spaces): three or more one-letter
# words in a row, and a letter repeated three or more times. Both linear: no nested repetition.
_LETTER = r"[^\W\d_]"  # digits are not letters written apart ("2 2 2") nor stretched ("1000")
_LETTERS_APART = re.compile(rf"(?<![^ ]){_LETTER}(?: {_LETTER}(?![^ ])){{2,}}")
_STRETCHED = re.compile(rf"({_LETTER})\1\1+")
_REPEATS = re.compile(r"(.)\1+")
_RUN = re.compile(r"(.)\1*")
STRETCH = 3  # a letter this many times or more is stretched; twice is ordinary spelling ("good")
MAX_CHUNK = 3  # letters (a stretched one counted once) in a chunk of a word written apart: "b an ned"
MIN_CHUNKS = 3  # two chunks are ordinary text: "go re", "pen is"


def _joined(reading: str) -> str:
    return _LETTERS_APART.sub(lambda run: run.group(0).replace(" ", ""), reading)


def collapse(text: str) -> str:
    """Each run of one character as one: "baaaannnnned" → "baned". Spaces never repeat in a reading,
    so a reading collapsed has its words collapsed in the same places."""
    return _REPEATS.sub(r"\1", text)


def _runs(word: str) -> tuple[int, ...]:
    return tuple(len(run.group(0)) for run in _RUN.finditer(word))


def stretched_from(written: str, listed: tuple[int, ...], shape: str) -> bool:
    """Whether `written`, collapsed `shape`, reads as the listed word whose runs are `listed`:
    each run as long as the listed one, or a letter's run of STRETCH or more and no shorter."""
    return all(
        have == want or (have >= STRETCH and have > want and ch.isalpha())
        for have, want, ch in zip(_runs(written), listed, shape, strict=True)
    )


def _sign_readings(prompt: str) -> tuple[str, ...]:
    """The prompt read four ways, six with a 1, | or ! (see the module's docstring), each read a second
    time with its letters written apart joined; the same reading twice (an ordinary prompt) is kept
    once."""
    folded = fold(prompt)
    leets = [folded.translate(_LEET)]
    if (as_i := folded.translate(_AS_I)) != folded:
        leets.append(as_i.translate(_LEET))
    out: dict[str, None] = {}
    for reading in (
        _spaced(_NOT_LETTER.sub(" ", folded)),
        _spaced(_JOINER.sub("", folded)),
        *(_spaced(_SIGN.sub(" ", leet)) for leet in leets),
        *(_spaced(_SIGN.sub("", leet)) for leet in leets),
    ):
        out[reading] = None
        out[_joined(reading)] = None
    return tuple(out)


def _unstretched(readings: Iterable[str]) -> tuple[str, ...]:
    """Each reading, and where a letter is stretched, read with each such run once and twice (for the
    wildcard patterns, which cannot compare runs)."""
    out: dict[str, None] = {}
    for text in readings:
        out[text] = None
        if _STRETCHED.search(text):
            out[_STRETCHED.sub(r"\1", text)] = None
            out[_STRETCHED.sub(r"\1\1", text)] = None
    return tuple(out)


def views(prompt: str) -> tuple[str, ...]:
    """The readings of a prompt the wildcard patterns are matched against, each as words of letters
    (and, in the last two, digits) separated by single spaces: digits and signs as spaces, or removed;
    then digits and signs that look like letters read as those letters, the other signs as spaces, or
    removed; and each of these with letters written apart joined and stretched letters read once and
    twice."""
    return _unstretched(_sign_readings(prompt))


def pattern_words(pattern: str) -> list[str]:
    """A pattern's words folded like a prompt (look-alikes read as letters), keeping `*` and `?`; a
    run of `*` is one."""
    words = []
    for word in pattern.split():
        kept = re.sub(r"[^\w*?]+|_+", "", fold(word).translate(_LEET))
        kept = re.sub(r"\*+", "*", kept)
        if kept:
            words.append(kept)
    return words


def check_pattern(pattern: str) -> str:
    """The pattern as it is stored: words separated by single spaces. Raises InputRefused when it is
    empty, too long, or has no letter or digit (a lone `*` would block every prompt)."""
    cleaned = " ".join(pattern.split())
    if not cleaned or len(cleaned) > MAX_PATTERN:
        raise InputRefused(_("A blocked word or phrase has 1 to {n} characters.", n=MAX_PATTERN))
    if not any(ch.isalnum() for ch in "".join(pattern_words(cleaned))):
        raise InputRefused(_("A blocked pattern needs at least one letter or digit besides `*` and `?`."))
    return cleaned


def has_wildcard(pattern: str) -> bool:
    return any(ch in WILDCARDS for ch in pattern)


_WORD = "[^ ]"  # a reading holds only word characters and single spaces


def _word_regex(word: str) -> str:
    """One pattern word as a regex. Each text between two `*`s is matched where it first fits, inside an
    atomic group (as fnmatch does): that is always right for a glob, and a chain of backtracking `\\w*`s
    would take time exponential in the number of `*`s on a long word."""

    def fixed(text: str) -> str:
        return "".join(_WORD if ch == "?" else re.escape(ch) for ch in text)

    if "*" not in word:
        return fixed(word)
    first, *middle, last = word.split("*")
    return fixed(first) + "".join(f"(?>{_WORD}*?{fixed(m)})" for m in middle if m) + _WORD + "*" + fixed(last)


def _phrase_regex(words: Sequence[str]) -> str:
    return " ".join(_word_regex(word) for word in words)


Listed = tuple[tuple[int, ...], str, str]  # a listed word's runs, its folded text, its pattern


@dataclass(slots=True)
class Rules:
    """A server's compiled list. Patterns without wildcards are looked up collapsed (see `collapse`):
    single words in a dict, for each of the prompt's words and runs of chunks, phrases from their first
    word, so their cost does not grow with their number; wildcard patterns are alternatives of one regex,
    tried once per word, at most MAX_WILDCARD_PATTERNS of them (a list stored before that cap keeps its
    entries)."""

    patterns: list[str] = field(default_factory=list)
    words: dict[str, list[Listed]] = field(default_factory=dict)  # collapsed -> the listed words
    phrases: dict[str, list[tuple[tuple[Listed, ...], str]]] = field(default_factory=dict)  # first word's …
    wildcards: list[str] = field(default_factory=list)
    regex: re.Pattern[str] | None = None
    longest: int = 0  # letters in the longest listed single word: the most chunks it can be written in
    starts: set[str] = field(default_factory=set)  # every beginning of a listed single word, collapsed

    @classmethod
    def build(cls, patterns: Iterable[str]) -> Rules:
        rules = cls()
        alternatives = []
        for pattern in patterns:
            rules.patterns.append(pattern)
            folded = pattern_words(pattern)
            if not folded:
                continue
            if has_wildcard(pattern):
                alternatives.append(f"(?P<w{len(rules.wildcards)}>{_phrase_regex(folded)})")
                rules.wildcards.append(pattern)
                continue
            listed = tuple((_runs(word), word, pattern) for word in folded)
            if len(folded) == 1:
                shape = collapse(folded[0])
                rules.words.setdefault(shape, []).append(listed[0])
                rules.starts.update(shape[:n] for n in range(1, len(shape) + 1))
                rules.longest = max(rules.longest, len(folded[0]))
            else:
                rules.phrases.setdefault(collapse(folded[0]), []).append((listed, pattern))
        if alternatives:
            rules.regex = re.compile(f"(?<!{_WORD})(?:{'|'.join(alternatives)})(?!{_WORD})")
        return rules

    def __len__(self) -> int:
        return len(self.patterns)

    @property
    def wildcard_count(self) -> int:
        return len(self.wildcards)

    def find(self, prompt: str) -> tuple[str, str] | None:
        """(the words the prompt was refused for, as the filter read them; the pattern), or None."""
        if not self.patterns:
            return None
        readings = _sign_readings(prompt)
        for reading in readings:
            words = reading.split(" ")
            shapes = collapse(reading).split(" ")
            found = self._word(words, shapes) or self._phrase(words, shapes) or self._chunks(words, shapes)
            if found is not None:
                return found
        if self.regex is not None:
            for reading in _unstretched(readings):
                match = self.regex.search(reading)
                if match is not None and match.lastgroup is not None:
                    return match.group(0), self.wildcards[int(match.lastgroup[1:])]
        return None

    def _listed(self, written: str, shape: str) -> tuple[str, str] | None:
        for runs, word, pattern in self.words.get(shape, ()):
            if stretched_from(written, runs, shape):
                return word, pattern
        return None

    def _word(self, words: Sequence[str], shapes: Sequence[str]) -> tuple[str, str] | None:
        if self.words.keys().isdisjoint(shapes):
            return None
        for written, shape in zip(words, shapes, strict=True):
            if shape in self.words and (found := self._listed(written, shape)) is not None:
                return found
        return None

    def _phrase(self, words: Sequence[str], shapes: Sequence[str]) -> tuple[str, str] | None:
        if not self.phrases or self.phrases.keys().isdisjoint(shapes):
            return None
        for i, shape in enumerate(shapes):
            for listed, pattern in self.phrases.get(shape, ()):
                if i + len(listed) <= len(words) and all(
                    shapes[i + k] == collapse(word) and stretched_from(words[i + k], runs, shapes[i + k])
                    for k, (runs, word, _pattern) in enumerate(listed)
                ):
                    return " ".join(word for _runs, word, _pattern in listed), pattern
        return None

    def _chunks(self, words: Sequence[str], shapes: Sequence[str]) -> tuple[str, str] | None:
        """A listed word written in MIN_CHUNKS or more chunks of at most MAX_CHUNK letters in a row."""
        if not self.words:
            return None
        for i, first in enumerate(shapes):
            if not 0 < len(first) <= MAX_CHUNK or first not in self.starts:
                continue
            written, shape = words[i], first
            for j in range(i + 1, min(len(words), i + self.longest)):
                piece = shapes[j]
                if len(piece) > MAX_CHUNK:
                    break
                shape += piece[1:] if shape[-1] == piece[0] else piece
                if shape not in self.starts:
                    break
                written += words[j]
                if j - i + 1 >= MIN_CHUNKS and shape in self.words:
                    found = self._listed(written, shape)
                    if found is not None:
                        return found
        return None


class PromptBlocked(InputRefused):
    """A prompt matched the server's block list; `pattern` is the entry it matched."""

    def __init__(self, found: str, pattern: str) -> None:
        super().__init__(
            _(
                "Your prompt contains “{found}”, which this server does not allow in prompts. "
                "Please rephrase it; nothing was charged.",
                found=found,
            )
        )
        self.pattern = pattern


class PromptFilter:
    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock
        self._cache: GuildCache[int, Rules] = GuildCache()

    async def patterns(self, guild_id: int) -> list[str]:
        return list((await self._rules(guild_id)).patterns)

    async def _rules(self, guild_id: int) -> Rules:
        async def load() -> Rules:
            return Rules.build(await sql.list_patterns(self.db, guild_id))

        return await self._cache.get(guild_id, load)

    async def prime(self, guild_ids: Sequence[int]) -> int:
        """Reads the block lists of these servers not yet in memory, in one statement; how many it kept."""

        async def load_many(ids: list[int]) -> dict[int, Rules]:
            found = await sql.list_patterns_of(self.db, ids)
            return {guild_id: Rules.build(patterns) for guild_id, patterns in found.items()}

        return await self._cache.prime(guild_ids, load_many)

    async def check(self, guild_id: int | None, prompt: str) -> None:
        """Raises PromptBlocked when the prompt matches one of the server's patterns."""
        if guild_id is None:
            return
        found = (await self._rules(guild_id)).find(prompt)
        if found is not None:
            raise PromptBlocked(*found)

    async def add(self, guild_id: int, pattern: str, *, actor_id: int) -> tuple[str, bool]:
        """(the stored pattern, whether it is new). Raises InputRefused for a bad pattern or a full list."""
        pattern = check_pattern(pattern)
        rules = await self._rules(guild_id)
        if len(rules) >= MAX_PATTERNS:
            raise InputRefused(_("This server's block list already has {n} entries.", n=MAX_PATTERNS))
        if has_wildcard(pattern) and rules.wildcard_count >= MAX_WILDCARD_PATTERNS:
            raise InputRefused(
                _(
                    "This server's block list already has {n} entries with `*` or `?`, the most it may have "
                    "(each one costs time on every prompt). Remove one, or add whole words, which cost "
                    "nothing.",
                    n=MAX_WILDCARD_PATTERNS,
                )
            )
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


def matches(pattern: str, prompt: str) -> bool:
    """Whether a block list of this one pattern refuses the prompt."""
    return Rules.build([pattern]).find(prompt) is not None
