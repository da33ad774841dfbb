"""The member's language: sentences as lazy messages, one catalogue per language, rendered at the edge.

gettext's shape without its build step: the English sentence is the message id (`_("The prompt is
empty.")`), so a call site reads as before and changes mechanically, and a missing translation falls back
to the English. A :class:`Message` IS that English text (a ``str``), so code and logs that treat it as
text keep working; it also carries its id and parameters, so the Discord edge (cogs/_ui.py's reply
helpers) renders it again in the interaction's locale with :func:`render`. Parameters may be messages
themselves (rendered in the same language).

The catalogues are Python dicts in bot/i18n/catalogue_<code>.py, one per language: no compile step, typed,
checked by mypy and by tests/test_i18n.py (every catalogue has every message id the code marks with `_`,
`_n` or `locale_str`, with no placeholder the English lacks). A plural entry is a tuple (one, other).

Whose language: a private answer is rendered in the member's (`interaction.locale`, cogs/_ui.py's
`for_member`); a public message everyone in a channel reads (a job's cards and failure notice, showcase
posts, the weekly top post) in the server's preferred language (`interaction.guild_locale`, the guild's
`preferred_locale`), or the member's where the server did not add the bot (cogs/_ui.py's
`public_locale`). A job keeps that language in `jobs.locale` (migration 0011) for messages sent after a
restart. Member text (prompts, names, links) is only ever a parameter, never a msgid.

Discord's locales: https://discord.com/developers/docs/reference#locales ("de", "fr", "es-ES", "es-419",
"pt-BR", "ja", "en-US", "en-GB", …).
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from typing import Any

from bot.i18n import catalogue_de, catalogue_es, catalogue_fr, catalogue_ja, catalogue_pt_br

Entry = str | tuple[str, str]

# Language code (Discord's, or its language part) → the catalogue.
CATALOGUES: Mapping[str, Mapping[str, Entry]] = {
    "de": catalogue_de.MESSAGES,
    "fr": catalogue_fr.MESSAGES,
    "es": catalogue_es.MESSAGES,  # Discord's es-ES and es-419 alike
    "pt-BR": catalogue_pt_br.MESSAGES,
    "ja": catalogue_ja.MESSAGES,
}
LANGUAGES = ("en", *CATALOGUES)
# Languages whose "one" form also covers 0 (CLDR plural rules: French and Brazilian Portuguese).
_ONE_INCLUDES_ZERO = frozenset({"fr", "pt-BR"})
_FORMATTER = string.Formatter()


class Message(str):
    """A sentence for a member: its English text, and its msgid and parameters for :func:`render`.

    `Message("The {label} is too large.", label="image")` == "The image is too large." A parameter that is
    a Message is rendered in the reader's language too. Raises KeyError when a placeholder has no
    parameter (a bug the tests catch)."""

    msgid: str
    params: Mapping[str, Any]
    plural: str | None = None
    number: int = 0

    def __new__(cls, msgid: str, /, **params: Any) -> Message:
        self = super().__new__(cls, msgid.format_map(params))
        self.msgid = msgid
        self.params = params
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (str, (str(self),))

    def in_language(self, locale: str | None) -> str:
        return render(self, locale)


class Plural(Message):
    """`Plural(n, "{n} credit", "{n} credits")`: the form for n, in the reader's language."""

    def __new__(cls, count: int, one: str, other: str, /, **params: Any) -> Plural:
        values = {"n": count, **params}
        self = str.__new__(cls, (one if count == 1 else other).format_map(values))
        self.msgid, self.params, self.plural, self.number = one, values, other, count
        return self


_ = Message


def _n(count: int, one: str, other: str, /, **params: Any) -> Plural:
    return Plural(count, one, other, **params)


def join(parts: Sequence[str], separator: str = "\n") -> Message:
    """Sentences (messages or text) joined into one message, each rendered in the reader's language.
    The separator must have no letters (it is not translated)."""
    params = {f"part{i}": part for i, part in enumerate(parts)}
    template = separator.replace("{", "{{").replace("}", "}}").join("{" + name + "}" for name in params)
    return Message(template, **params)


def language(locale: object) -> str:
    """The catalogue's code for a Discord locale (a discord.Locale or its value): "de", "pt-BR", "ja"…;
    "en" for English and for any language without a catalogue."""
    code = str(getattr(locale, "value", locale) or "")
    if code in CATALOGUES:
        return code
    base = code.split("-", 1)[0]
    return base if base in CATALOGUES else "en"


def translate(msgid: str, locale: object) -> str | None:
    """The catalogue's text for a msgid (a plural's "one" form), or None when there is none."""
    entry = CATALOGUES.get(language(locale), {}).get(msgid)
    if isinstance(entry, tuple):
        return entry[0]
    return entry


def render(text: str, locale: object) -> str:
    """`text` in the locale's language when it is a Message with a translation there, else as it is.
    A translation that cannot be filled in (a placeholder the English lacks) falls back to English."""
    if not isinstance(text, Message):
        return text
    code = language(locale)
    if code == "en":
        return str(text)
    params = {k: render(v, code) if isinstance(v, str) else v for k, v in text.params.items()}
    entry = CATALOGUES[code].get(text.msgid)
    if entry is None:
        template = text.msgid if text.plural is None or text.number == 1 else text.plural
    elif isinstance(entry, tuple):
        one_form = text.number == 1 or (text.number == 0 and code in _ONE_INCLUDES_ZERO)
        template = entry[0] if one_form else entry[1]
    else:
        template = entry
    try:
        return template.format_map(params)
    except (KeyError, IndexError, ValueError):
        return str(text)


# A stored sentence longer than this is shown as it is (reading it back is for sentences, not pages).
MAX_STORED = 2000


def _read_back(template: str, text: str) -> dict[str, str] | None:
    """The parameters that fill `template` in to give `text`, read left to right by each literal piece's
    next occurrence (linear, no backtracking); None when the text is not that template filled in (or
    two placeholders touch, which cannot be read back)."""
    params: dict[str, str] = {}
    pos, field = 0, ""
    for literal, name, _spec, _conv in _FORMATTER.parse(template):
        if field:
            if not literal:
                return None
            end = text.find(literal, pos + 1)
            if end < 0 or params.setdefault(field, text[pos:end]) != text[pos:end]:
                return None
            pos = end + len(literal)
        elif not text.startswith(literal, pos):
            return None
        else:
            pos += len(literal)
        field = name or ""
    if field:
        if pos >= len(text) or params.setdefault(field, text[pos:]) != text[pos:]:
            return None
        pos = len(text)
    return params if pos == len(text) else None


def stored_sentence(text: str) -> str:
    """A sentence read back from the database (a job's error or cancel reason, written in English when the
    job ended): a Message again when it is a catalogued sentence, its parameters read back from the text
    (as text), so it is shown in the reader's language; else the text as it is."""
    if len(text) > MAX_STORED:
        return text
    catalogue = CATALOGUES["de"]  # every catalogue has the same keys (tests/test_i18n.py)
    if text in catalogue and "{" not in text:
        return Message(text)
    for msgid in catalogue:
        if "{" in msgid and needs_translation(msgid):
            params = _read_back(msgid, text)
            if params is not None:
                words = {k: Message(v) if v in catalogue and "{" not in v else v for k, v in params.items()}
                return Message(msgid, **words)
    return text


def placeholders(template: str) -> set[str]:
    """The names of a template's {placeholders}."""
    return {field for _text, field, _spec, _conv in _FORMATTER.parse(template) if field}


_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


def is_name(text: str) -> bool:
    """Whether a `locale_str` is a command's, option's or choice's name ("quota-admin", "end_image",
    "newest") rather than a sentence: lower-case letters, digits, `-` and `_` only. Its catalogue key is
    "/name", apart from the same word in a sentence ("image" the option is "bild", in a sentence "Bild")."""
    return bool(text) and set(text) <= _NAME_CHARS


def needs_translation(msgid: str) -> bool:
    """Whether a msgid has words in it (a template such as "{reason} {left}" only joins messages)."""
    words = "".join(text for text, *_rest in _FORMATTER.parse(msgid))
    return any(ch.isalpha() for ch in words)
