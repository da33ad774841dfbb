"""The last answer (cogs/unanswered.py): buttons and forms of an older version get a private sentence."""

from __future__ import annotations

from pathlib import Path

from bot.i18n import render
from cogs.unanswered import NO_BUTTON, OUTDATED
from tests.fakes import payloads as p
from tests.world import running_world


async def test_an_old_fix_offer_and_an_old_menu_form_are_told_they_no_longer_work(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        click = await world.discord.dispatch_interaction(
            p.button_click(world.discord, "fix:confirm", locale="de")
        )
        assert await world.private_answer(click) == render(OUTDATED, "de")
        assert render(OUTDATED, "de") != render(OUTDATED, "en-US")  # said in the member's language
        form = await world.discord.dispatch_interaction(
            p.modal_submit(world.discord, "3f2a9c0d1e4b5a6978877665544332211", {"prompt": "waves"})
        )
        assert await world.private_answer(form) == render(OUTDATED, "en-US")
        row = await world.db.fetchone("SELECT COUNT(*) FROM jobs")
        assert row is not None and row[0] == 0


async def test_a_forged_form_id_no_form_handles_is_told_at_once_and_changes_nothing(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        for custom_id in (
            "kling:remixform:abc",
            "kling:extendform:",
            "kling:animateform:1x",
            "kling:nosuchform:1",
        ):
            form = await world.discord.dispatch_interaction(
                p.modal_submit(world.discord, custom_id, {"prompt": "waves"})
            )
            assert await world.private_answer(form) == render(NO_BUTTON, "en-US")
        row = await world.db.fetchone("SELECT COUNT(*) FROM jobs")
        assert row is not None and row[0] == 0
