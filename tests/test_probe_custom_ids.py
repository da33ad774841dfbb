"""A forged custom_id (issue 18/19: nothing from outside is trusted): a press whose number is larger
than any stored id, against the real bot through the fake Discord, is answered with the sentence for a
job or showcase the bot does not know, and logs no traceback. A client can send any custom_id up to 100
characters; a number past a signed 64-bit integer made SQLite raise OverflowError ("Something went
wrong" and a traceback for job buttons, and the gallery and history pages answered nothing)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.fakes import payloads as p
from tests.world import running_world

HUGE = "9" * 30
JOB_BUTTONS = ["cancel", "retry", "remix", "extend", "delete", "show"]


async def test_job_and_showcase_buttons_with_a_number_past_any_stored_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with running_world(tmp_path) as world:
        world.discord.ensure_member(p.DEFAULT_GUILD_ID, p.DEFAULT_USER_ID)
        for kind in [*JOB_BUTTONS, "vote"]:
            record = await world.discord.dispatch_interaction(
                p.button_click(world.discord, f"kling:{kind}:{HUGE}")
            )
            answer = await world.private_answer(record, within=5)
            assert "went wrong" not in answer, (kind, answer)
        assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize(
    "custom_id", [f"kling:gal:n:0:{HUGE}:n", f"kling:hist:{HUGE}:n", "kling:hist:4611686018427387904:n"]
)
async def test_page_buttons_with_a_page_past_any_stored_number(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, custom_id: str
) -> None:
    caplog.set_level(logging.INFO)
    async with running_world(tmp_path) as world:
        world.discord.ensure_member(p.DEFAULT_GUILD_ID, p.DEFAULT_USER_ID)
        record = await world.discord.dispatch_interaction(p.button_click(world.discord, custom_id))
        gone = f"interaction {record.id}: the paged message is gone"

        def page_sent() -> bool:
            # The made-up message the button is on is not stored, so the page's edit meets "gone": the
            # page was built and sent, which is what a real press needs.
            return any(gone in r.getMessage() for r in caplog.records)

        await world.discord.wait_for(page_sent, timeout=5)
        assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("action", ["remix", "extend"])
async def test_a_form_naming_a_job_past_any_stored_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, action: str
) -> None:
    caplog.set_level(logging.WARNING)
    async with running_world(tmp_path) as world:
        world.discord.ensure_member(p.DEFAULT_GUILD_ID, p.DEFAULT_USER_ID)
        fields = {"prompt": "the cat waves", "negative_prompt": "", "duration": "5"}
        record = await world.discord.dispatch_interaction(
            p.modal_submit(world.discord, f"kling:{action}form:{HUGE}", fields)
        )
        answer = await world.private_answer(record, within=5)
        assert "I don't know this video" in answer, answer
        assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
