"""Why a job failed, in a sentence a member can read, from what the API said (machine words, codes or
its own human message). A bare code never reaches a member, and every sentence says whether trying
again may help."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# How much of the API's own text is repeated to a member or in a log line.
MAX_API_TEXT = 300
# How much of any text from outside a pattern ever sees: every string is cut to this first, so no
# answer (a 48,000-character code, a 1 MB message) costs more than a bounded, linear scan.
MAX_SCANNED = 1000

MAY_HELP = "Trying again may help."
SAME_INPUT = "Trying again with the same input will not help."

# A "machine word": one token such as content_policy, NSFW, E1234 or kling.timeout; never shown as is.
_MACHINE = re.compile(r"[A-Za-z0-9_.:/-]+")
# Codes that only say "it failed", whatever failed: they name no kind.
_GENERIC_WORDS = frozenset(
    {
        "error",
        "errors",
        "failed",
        "failure",
        "unknown",
        "unknown_error",
        "prediction_failed",
        "prediction_error",
        "generation_failed",
        "generation_error",
        "job_failed",
        "task_failed",
        "request_failed",
    }
)
# Human texts that say no more than a generic code ("Prediction failed.").
_GENERIC_TEXT = re.compile(
    r"(the )?(prediction|generation|request|job|task|model|video)?( has)? ?(failed|error(ed)?)\.?", re.I
)

_MODERATION = r"polic|moderat|nsfw|safety|flag|sensitive|inappropriate|prohibit|violat|unsafe|censor|blocked"
_PICTURE = r"image|picture|photo|frame"


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of failure: the words that name it (``words`` and, when given, also ``with_words``
    somewhere in the same text), its sentence, and whether retrying helps by default (``advice`` is
    said when it does not)."""

    name: str
    words: re.Pattern[str]
    sentence: str
    retryable: bool
    advice: str = SAME_INPUT
    with_words: re.Pattern[str] | None = None

    def named_by(self, text: str) -> bool:
        # Two searches, not one `(a).*(b)|(b).*(a)` pattern: that one backtracks quadratically on a
        # text such as "image_" repeated (issue 19); each search here is linear.
        if self.words.search(text) is None:
            return False
        return self.with_words is None or self.with_words.search(text) is not None


KINDS = (
    Kind(
        "moderation_picture",
        re.compile(_PICTURE),
        "Kling's content moderation refused the picture.",
        False,
        "Trying again with the same picture will not help; a different picture may.",
        re.compile(_MODERATION),
    ),
    Kind(
        "moderation_prompt",
        re.compile(r"prompt|text"),
        "Kling's content moderation refused the prompt.",
        False,
        "Trying again with the same prompt will not help; different wording may.",
        re.compile(_MODERATION),
    ),
    Kind(
        "moderation",
        re.compile(rf"{_MODERATION}|content_(filter|block|review)"),
        "Kling's content moderation refused the picture or the prompt.",
        False,
        "Trying again with the same picture and prompt will not help.",
    ),
    Kind(
        "invalid_input",
        re.compile(
            r"invalid|validat|unsupported|unprocessable|malformed|bad_|too_(large|small|big|long|short)|"
            r"dimension|aspect|resolution|format"
        ),
        "Kling could not use the picture or the options of this job.",
        False,
    ),
    Kind(
        "timeout",
        re.compile(r"time_?out|timed_?out|deadline"),
        "Kling took too long to make this video and gave up.",
        True,
    ),
    Kind(
        "provider_error",
        re.compile(
            r"provider|internal|server|upstream|unavailable|overload|capacity|busy|model_error|inference|"
            r"gpu|crash|exception|service"
        ),
        "Kling had a problem on its side while making this video.",
        True,
    ),
)


def bounded(text: str, limit: int = MAX_SCANNED) -> str:
    """``text`` cut to ``limit`` characters: what every pattern and join sees of a text from outside."""
    return text if len(text) <= limit else text[:limit]


def clean_text(text: str) -> str:
    """One line of at most MAX_API_TEXT characters (cut ones end with "…"), whatever ``text``'s size."""
    text = " ".join(bounded(str(text)).split())
    return text if len(text) <= MAX_API_TEXT else text[: MAX_API_TEXT - 1] + "…"


def is_cut(text: str) -> bool:
    """True for a text :func:`clean_text` had to cut: a slice of an answer, never shown to a member."""
    return text.endswith("…") and len(text) == MAX_API_TEXT


def is_machine_word(text: str) -> bool:
    return _MACHINE.fullmatch(bounded(text)) is not None


def kind_of(words: Iterable[str | None], *, sentences: bool = False) -> Kind | None:
    """The first known kind named by a machine word among ``words`` (or by any text, ``sentences``)."""
    for word in words:
        if not word or not (sentences or is_machine_word(word)):
            continue
        normal = re.sub(r"[^a-z0-9]+", "_", bounded(word).lower()).strip("_")
        if normal in _GENERIC_WORDS:
            continue
        for kind in KINDS:
            if kind.named_by(normal):
                return kind
    return None


def human_text(texts: Iterable[str | None]) -> str | None:
    """The first of ``texts`` a person wrote: more than one word (or a non-ASCII one, as Chinese is
    written), more than "Prediction failed", and whole: a text too long to show whole is not quoted."""
    for text in texts:
        if not text:
            continue
        text = clean_text(text)
        if is_cut(text) or is_machine_word(text) or _GENERIC_TEXT.fullmatch(text):
            continue
        if " " not in text and text.isascii():
            continue  # one ASCII token that is not a plain word either ("E#42!"): a code all the same
        return text
    return None


def explain(
    texts: Iterable[str | None],
    *,
    retryable: bool | None,
    default_retryable: bool,
    lead: str = "Kling could not make this video",
) -> tuple[str, bool]:
    """(the member's sentence, whether retrying may help) from what the API said about a failure.

    ``texts``: its reasons, messages and codes, most specific first. A known kind (content moderation
    of the picture or the prompt, invalid input, timeout, provider error) gives its sentence, followed
    by the API's human message when it has one; otherwise the human message follows ``lead``. The
    API's own ``retryable`` wins over the kind's (also read from the human message), which wins over
    ``default_retryable``.
    """
    said = list(texts)
    kind = kind_of(said)
    human = human_text(said)
    # A human message that reads like a kind ("The prompt violates our policy") sets the advice only.
    guess = kind or kind_of([human], sentences=True)
    if retryable is None:
        retryable = guess.retryable if guess is not None else default_retryable
    refusal = guess.advice if guess is not None else SAME_INPUT
    advice = MAY_HELP if retryable else refusal
    quoted = human.rstrip(". ") if human else None
    if kind is not None:
        sentence = kind.sentence + (f" Kling said: {quoted}." if quoted else "")
    else:
        sentence = f"{lead}: {quoted}." if quoted else f"{lead}."
    return f"{sentence} {advice}", retryable
