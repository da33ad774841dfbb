"""A member's prompt as a forum post's title (issue 18 item 6): markdown hidden inside a mention must not
put the mention back together when the markdown is taken out."""

from __future__ import annotations

import pytest

from bot.showcase import forum_title


@pytest.mark.parametrize("prompt", ["@every*one look", "@he**re look", "@every_one look", "@e`very`one look"])
def test_a_mention_split_by_markdown_is_not_rebuilt_in_a_forum_title(prompt: str) -> None:
    title = forum_title(prompt, fallback="Showcase #7")
    assert "@everyone" not in title and "@here" not in title, title
    assert title == "look"


@pytest.mark.parametrize("text", ["²", "#¹²", "①"])
def test_a_post_reference_in_digits_int_cannot_read_finds_nothing(text: str) -> None:
    """`/showcase-admin remove post:²`: str.isdigit() takes superscripts and circled digits, which int()
    refuses, so the command died with a traceback and "Something went wrong"."""
    from cogs.showcase._cog import parse_post_reference

    assert parse_post_reference(text) == {"message_id": None, "showcase_id": None}
