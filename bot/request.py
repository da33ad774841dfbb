"""What a member asked for with /animate, and the checks that need no download."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from bot.errors import InputRefused
from bot.i18n import _, _n, join
from bot.media import AttachmentInfo
from bot.sunra.models import MAX_VOICES
from bot.voices import check_voice_id

MAX_PROMPT = 2500
DEFAULT_NEGATIVE_PROMPT = "blur, distort, and low quality"
_VOICE_REF = re.compile(r"<<<voice_(\d+)>>>")


class AttachmentRef(BaseModel):
    """An attachment as Discord described it; the URL is signed and expires, so it is used once."""

    url: str
    filename: str
    content_type: str | None = None
    size: int
    width: int | None = None
    height: int | None = None

    def info(self) -> AttachmentInfo:
        """The metadata the picture checks read before anything is downloaded."""
        return AttachmentInfo(
            filename=self.filename,
            content_type=self.content_type,
            size=self.size,
            width=self.width,
            height=self.height,
        )


class AnimateRequest(BaseModel):
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT)
    negative_prompt: str = Field(default=DEFAULT_NEGATIVE_PROMPT, max_length=MAX_PROMPT)
    duration: Literal[5, 10] = 5
    audio: bool = True
    voice_ids: list[str] = Field(default_factory=list, max_length=MAX_VOICES)
    image: AttachmentRef
    end_image: AttachmentRef | None = None
    # The video ends on its first frame (Midjourney's --loop): the start image is sent as the end image.
    loop: bool = False
    # Extend: the job whose video this one continues, and a link to that video's post.
    extends_job: int | None = None
    extends_link: str | None = None

    def to_params(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def describe_settings(self) -> str:
        """ "5 s · audio · 1 voice · end image · loop", a message in the reader's language."""
        parts = [f"{self.duration} s", _("audio") if self.audio else _("silent")]
        if self.voice_ids:
            parts.append(_n(len(self.voice_ids), "{n} voice", "{n} voices"))
        if self.end_image is not None:
            parts.append(_("end image"))
        if self.loop:
            parts.append(_("loop"))
        return join(parts, " · ")


def without_nul(text: str) -> str:
    """A member's text without NUL characters: they mean nothing in a prompt or an id, and PostgreSQL's
    text cannot hold them."""
    return text.replace("\x00", "")


def build_request(
    *,
    prompt: str,
    image: AttachmentRef,
    end_image: AttachmentRef | None = None,
    negative_prompt: str | None = None,
    duration: int = 5,
    audio: bool | None = None,
    voice_1: str | None = None,
    voice_2: str | None = None,
    loop: bool = False,
) -> AnimateRequest:
    """Checks the options against each other; raises InputRefused with a sentence a member understands."""
    # NUL characters mean nothing in a prompt, and PostgreSQL text cannot hold them: dropped at the door.
    prompt = without_nul(prompt).strip()
    if not prompt:
        raise InputRefused(_("The prompt is empty. Please describe the motion you want to see."))
    if len(prompt) > MAX_PROMPT:
        raise InputRefused(
            _(
                "The prompt has {count} characters; Kling accepts at most {limit}.",
                count=len(prompt),
                limit=MAX_PROMPT,
            )
        )
    negative = without_nul(negative_prompt or "").strip() or DEFAULT_NEGATIVE_PROMPT
    if len(negative) > MAX_PROMPT:
        raise InputRefused(
            _(
                "The negative prompt has {count} characters; Kling accepts at most {limit}.",
                count=len(negative),
                limit=MAX_PROMPT,
            )
        )
    if duration not in (5, 10):
        raise InputRefused(_("The duration must be 5 or 10 seconds."))
    if loop and end_image is not None:
        raise InputRefused(
            _(
                "`loop` ends the video on its start image, so it cannot be combined with `end_image`. "
                "Leave one of them out."
            )
        )
    voices = _voice_ids(voice_1, voice_2)
    with_audio = True if audio is None else audio
    if voices and not with_audio:
        raise InputRefused(_("Voices need audio. Turn `audio` on or leave the voices out."))
    _check_voice_references(prompt, len(voices))
    return AnimateRequest(
        prompt=prompt,
        negative_prompt=negative,
        duration=5 if duration == 5 else 10,
        audio=with_audio,
        voice_ids=voices,
        image=image,
        end_image=end_image,
        loop=loop,
    )


def _voice_ids(voice_1: str | None, voice_2: str | None) -> list[str]:
    first = without_nul(voice_1 or "").strip()
    second = without_nul(voice_2 or "").strip()
    if second and not first:
        raise InputRefused(_("`voice_2` was given without `voice_1`. Please fill in `voice_1` first."))
    return [voice for voice in (first, second) if voice]


def _reference_gaps(prompt: str, voice_count: int) -> tuple[list[int], list[int]]:
    """The voice numbers the prompt refers to without a voice given, and those given but never referred to."""
    referenced = {int(number) for number in _VOICE_REF.findall(prompt)}
    given = set(range(1, voice_count + 1))
    return sorted(referenced - given), sorted(given - referenced)


def _check_voice_references(prompt: str, voice_count: int) -> None:
    missing, unused = _reference_gaps(prompt, voice_count)
    if missing:
        names = ", ".join(f"`voice_{n}`" for n in missing)
        raise InputRefused(
            _(
                "The prompt refers to {references} but {names} was not given. Add the voice id or remove the "
                "reference.",
                references=", ".join(f"<<<voice_{n}>>>" for n in missing),
                names=names,
            )
        )
    if unused:
        name = f"voice_{unused[0]}"
        raise InputRefused(
            _(
                "`{name}` was given but the prompt never says <<<{name}>>>. "
                "Put the reference where that voice should speak.",
                name=name,
            )
        )


def voice_flags(voices: Sequence[str]) -> list[str]:
    """The voice ids of `kling-bot animate`'s `--voice` options, stripped. Raises InputRefused naming
    `--voice` when there are more than Kling takes or one is not a voice id (the terminal's usage errors)."""
    if len(voices) > MAX_VOICES:
        raise InputRefused(
            _n(
                MAX_VOICES,
                "`--voice` may be given at most {n} time: Kling takes at most {n} voice per video.",
                "`--voice` may be given at most {n} times: Kling takes at most {n} voices per video.",
            )
        )
    ids = []
    for voice in voices:
        try:
            ids.append(check_voice_id(voice))
        except InputRefused as refusal:
            raise InputRefused(
                _("Each `--voice` takes a voice id. {rule}", rule=refusal.user_message)
            ) from None
    return ids


def check_voice_flags(prompt: str, voices: Sequence[str], *, audio: bool) -> None:
    """The checks build_request makes of voice_1 and voice_2, worded for the terminal's `--voice`
    options (the Discord option names mean nothing there); raises InputRefused."""
    if voices and not audio:
        raise InputRefused(_("Voices need audio. Leave out `--no-audio`, or the `--voice` options."))
    missing, unused = _reference_gaps(prompt, len(voices))
    if missing:
        raise InputRefused(
            _n(
                len(voices),
                "The prompt refers to {references} but `--voice` was given {n} time. "
                "Give a `--voice` for each reference, in order, or remove the reference.",
                "The prompt refers to {references} but `--voice` was given {n} times. "
                "Give a `--voice` for each reference, in order, or remove the reference.",
                references=", ".join(f"<<<voice_{n}>>>" for n in missing),
            )
        )
    if unused:
        raise InputRefused(
            _(
                "`--voice {voice}` was given but the prompt never says {reference}. "
                "Put the reference where that voice should speak.",
                voice=voices[unused[0] - 1],
                reference=f"<<<voice_{unused[0]}>>>",
            )
        )
