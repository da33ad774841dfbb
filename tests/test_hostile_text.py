"""Issue 19, item 2: every text from outside is cut before a pattern runs on it, and no pattern in the
product is worse than linear. Each pattern (every `re.` in bot/ and cogs/) meets 1 MB inputs shaped to
make a backtracking pattern blow up; a quadratic one takes minutes on these, so this file would not end."""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path

import httpx
import pytest

from bot import blocklist, request, showcase, voices
from bot.errors import InputRefused
from bot.sunra import prediction_failure
from bot.sunra.errors import MAX_CODE_CHARS, SunraError
from bot.sunra.models import is_video_url, status_event
from bot.sunra.reasons import KINDS, MAX_API_TEXT, MAX_SCANNED, clean_text, explain, human_text, kind_of
from bot.sunra.transport import error_fields, forbidden_kind
from cogs._text import escape_member_text

MB = 1_000_000
# Texts that defeat backtracking: a run of one piece that almost matches, and nothing that completes it.
HOSTILE = [
    "image_" * (MB // 6),
    "a" * MB,
    " " * MB,
    "_" * MB,
    "<<<voice_" * (MB // 9),
    "rate " * (MB // 5),
    "<@" + "1" * MB,
    "prompt " * (MB // 7),
    "polic" * (MB // 5),
    "\n" * MB,
    " \n1" * (MB // 3),
]


def test_every_pattern_in_the_product_is_listed_here() -> None:
    """A new `re.` in bot/ or cogs/ must come with its 1 MB case in this file."""
    root = Path(__file__).resolve().parents[1]
    uses = {
        str(path.relative_to(root))
        for folder in ("bot", "cogs")
        for path in (root / folder).rglob("*.py")
        if re.search(r"\bre\.(compile|sub|search|match|fullmatch|findall|finditer|split)\(", path.read_text())
    }
    assert uses == {
        "bot/blocklist.py",
        "bot/media.py",
        "bot/redact.py",
        "bot/request.py",
        "bot/showcase.py",
        "bot/store/migrations.py",
        "bot/store/sql.py",
        "bot/sunra/reasons.py",
        "bot/sunra/transport.py",
        "bot/voices.py",
        "cogs/_text.py",
        "cogs/jobs/_menu.py",
        "cogs/jobs/_results.py",
        "cogs/showcase/_cog.py",
    }


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_reasons_patterns_on_1_mb(text: str) -> None:
    for kind in KINDS:
        kind.named_by(text[:MAX_SCANNED])
        kind.named_by(text)  # even uncut, each pattern alone is linear
    kind_of([text, text])
    kind_of([text], sentences=True)
    human_text([text])
    sentence, _ = explain([text, text], retryable=None, default_retryable=True)
    assert len(sentence) < 2 * MAX_API_TEXT + 200
    assert len(clean_text(text)) <= MAX_API_TEXT


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_transport_patterns_on_1_mb(text: str) -> None:
    forbidden_kind(httpx.Headers(), text, text)
    response = httpx.Response(403, json={"error": {"code": text, "message": text}})
    code, message, _ = error_fields(response)
    assert code is not None and len(code) <= MAX_SCANNED
    assert message is not None and len(message) <= MAX_SCANNED
    plain = httpx.Response(500, content=text.encode())
    assert len(error_fields(plain)[1] or "") <= MAX_API_TEXT
    assert len(SunraError(code=text).code or "") <= MAX_CODE_CHARS


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_other_patterns_on_1_mb(text: str) -> None:
    showcase.shows_nothing(text)
    showcase.forum_title(text, fallback="x")
    escape_member_text(text)
    request._VOICE_REF.findall(text)
    blocklist.normalise(text)
    blocklist.Rules.build(["gor*", "*a*b*c*", "a?b*", "image *_ *", "gore"]).find(text)
    for check in (voices.check_name, voices.check_voice_id):
        with contextlib.suppress(InputRefused):
            check(text)
    is_video_url("https://a/" + text)
    from bot.store import migrations, sql

    migrations._FILE.match(text)
    sql._JSON_EACH.search(text)
    from cogs.jobs._menu import MENU_FORM
    from cogs.jobs._results import FORM_TEMPLATE
    from cogs.showcase._cog import _MESSAGE_LINK

    FORM_TEMPLATE.match(text)
    MENU_FORM.fullmatch(text)
    _MESSAGE_LINK.search("/channels/" + text)
    from bot.media import _file_name

    _file_name(text, "jpg")


def test_a_48000_character_code_and_a_1_mb_message_make_a_sentence() -> None:
    code = "image_" * 8000
    message = "x" * MB
    failure = prediction_failure({"code": "PREDICTION_FAILED", "message": message, "details": {"code": code}})
    said = failure.user_message
    assert "xxxxxxxx" not in said and "image_image_" not in said
    assert said.endswith(".") and len(said) < 400
    event = status_event('{"status": "' + "Q" * MB + '"}', "GET status")
    assert event is not None


async def test_an_answer_with_huge_texts_does_not_hold_up_another_members_animate(tmp_path: Path) -> None:
    """While a job's answer with a 48,000-character code and a 1 MB message is handled, other members'
    /animate commands are acknowledged within 1 s (a correctness bound: the loop is never blocked)."""
    from tests.fakes.sunra_server import JobPlan
    from tests.world import running_world

    async with running_world(tmp_path) as world:
        error = {
            "code": "PREDICTION_FAILED",
            "message": "m" * MB,
            "details": {"code": "image_" * 8000, "message": "x" * MB, "reason": "image_" * 8000},
        }
        final = {"status": "COMPLETED", "success": False, "error": error}
        world.sunra.plan_jobs(JobPlan(seconds=0.5, final_status=final), prompt_contains="[hostile]")
        hostile = await world.animate("the cat waves [hostile]")
        await world.sunra.wait_until(lambda: any(job.is_done() for job in world.sunra.jobs.values()), 10)
        for member in range(5):
            other = await world.animate("a dog runs", user_id=9000 + member)
            await world.discord.wait_for_callback(other.id, timeout=1.0)
            await asyncio.sleep(0.1)
        job = await world.ended(hostile)
        assert job.state == "failed"
        said = job.error_message or ""
        assert "mmmmm" not in said and "image_image" not in said and len(said) < 400
