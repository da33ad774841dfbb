"""Option checks that need no download: prompt, voices, audio."""

from __future__ import annotations

import pytest

from bot.errors import InputRefused
from bot.request import DEFAULT_NEGATIVE_PROMPT, AttachmentRef, build_request

IMAGE = AttachmentRef(url="http://127.0.0.1/a.png", filename="a.png", content_type="image/png", size=1000)


def test_defaults() -> None:
    request = build_request(prompt="  a cat waves  ", image=IMAGE)
    assert request.prompt == "a cat waves"
    assert request.negative_prompt == DEFAULT_NEGATIVE_PROMPT
    assert (request.duration, request.audio, request.voice_ids) == (5, True, [])


def test_voices_in_order_and_referenced() -> None:
    request = build_request(
        prompt="<<<voice_1>>> says hi to <<<voice_2>>>", image=IMAGE, voice_1="v-a", voice_2="v-b"
    )
    assert request.voice_ids == ["v-a", "v-b"]
    assert "2 voices" in request.describe_settings()


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"prompt": "   "}, "prompt is empty"),
        ({"prompt": "x" * 2501}, "at most 2500"),
        ({"prompt": "ok", "negative_prompt": "n" * 2501}, "negative prompt"),
        ({"prompt": "<<<voice_1>>> hi", "voice_1": "v", "audio": False}, "Voices need audio"),
        ({"prompt": "<<<voice_1>>> hi"}, "`voice_1` was not given"),
        ({"prompt": "hi", "voice_1": "v"}, "never says <<<voice_1>>>"),
        ({"prompt": "<<<voice_2>>> hi", "voice_2": "v"}, "without `voice_1`"),
        ({"prompt": "<<<voice_1>>> <<<voice_2>>>", "voice_1": "v"}, "<<<voice_2>>>"),
        ({"prompt": "hi", "duration": 7}, "5 or 10"),
    ],
)
def test_refusals_explain_themselves(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(InputRefused) as caught:
        build_request(image=IMAGE, **kwargs)  # type: ignore[arg-type]
    assert fragment in caught.value.user_message
