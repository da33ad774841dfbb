"""A member's text in the bot's public embeds shows as typed: never the bot's markup, links or pings."""

from __future__ import annotations

from pathlib import Path

import discord
import pytest

from cogs._text import EMBED_DESCRIPTION_LIMIT, clip, escape_member_text
from tests.fakes.discord_server._components import components_text
from tests.world import running_world


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        ("# Official announcement", "\\# Official announcement"),
        ("## big\n### bigger", "\\## big\n\\### bigger"),
        ("-# small print", "\\-# small print"),
        ("- one\n- two", "\\- one\n\\- two"),
        ("1. first\n2. second", "1\\. first\n2\\. second"),
        ("[free nitro](https://evil.example)", "\\[free nitro](https://evil.example)"),
        (
            "**bold** _it_ ~~gone~~ ||spoiler|| `code`",
            "\\*\\*bold\\*\\* \\_it\\_ \\~\\~gone\\~\\~ \\|\\|spoiler\\|\\| \\`code\\`",
        ),
        ("> quoted", "\\> quoted"),
        ("@everyone look", "@\u200beveryone look"),
        (
            "hi <@123456789012345678> and <@&123456789012345678>",
            "hi <@\u200b123456789012345678> and <@\u200b&123456789012345678>",
        ),
        ("see <#123456789012345678>", "see <#\u200b123456789012345678>"),
        ("a cat waves at 3.5 fps", "a cat waves at 3.5 fps"),
        ("https://example.com/a_b_c", "https://example.com/a_b_c"),
    ],
)
def test_member_text_is_escaped(typed: str, shown: str) -> None:
    assert escape_member_text(typed) == shown


def test_escaping_is_what_discord_py_does_for_markdown() -> None:
    typed = "# t\n**b** [x](https://e.example) _i_"
    assert escape_member_text(typed) == discord.utils.escape_markdown(typed, ignore_links=True)


def test_a_clipped_text_never_ends_in_a_lone_backslash() -> None:
    text = escape_member_text("*" * 3000)
    clipped = clip(text, EMBED_DESCRIPTION_LIMIT)
    assert len(clipped) <= EMBED_DESCRIPTION_LIMIT and clipped.endswith("\\*…")
    assert clip("short", 10) == "short"


async def test_the_public_progress_embed_shows_the_prompt_as_typed(tmp_path: Path) -> None:
    async with running_world(tmp_path) as world:
        prompt = "# Free nitro\n[claim here](https://evil.example) **now** @everyone"
        job = await world.ended(await world.animate(prompt))
        assert job.state == "delivered"
        progress = world.discord.message(job.progress_message_id or 0)
        # The card's first text display: its heading, then the prompt.
        description = components_text(progress.message["components"]).split("\n", 1)[1]
        assert description.startswith(escape_member_text(prompt))
        assert description.startswith("\\# Free nitro\n\\[claim here]")
        assert "@\u200beveryone" in description


def test_showcase_posts_and_pages_show_the_prompt_as_typed() -> None:
    from bot.store.showcases import Showcase
    from cogs.showcase._pages import showcase_line
    from cogs.showcase._post import showcase_card
    from tests.fakes.discord_server._components import v2_text

    prompt = "## [vote here](https://evil.example) ||now|| <@&123456789012345678>"
    showcase = Showcase(7, 111, 1, 3, "3", prompt, "5 s", 10, 11, None, 0, 0.0, None)
    card = v2_text(showcase_card(showcase, "attachment://kling-1.mp4").to_components())
    assert escape_member_text(prompt) in card.split("\n")
    line = showcase_line(showcase)
    assert (
        "\\|\\|now\\|\\|" in line and "<@\u200b&123456789012345678>" in line and "](https://evil" not in line
    )
