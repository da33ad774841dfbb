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


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        ("run </animate:1234567890123456789> now", "run <\u200b/animate:1234567890123456789> now"),
        ("</showcase-admin remove:123>", "<\u200b/showcase-admin remove:123>"),
        ("go to <id:browse> or <id:customize>", "go to <\u200bid:browse> or <\u200bid:customize>"),
        ("at <t:1700000000:R>", "at <\u200bt:1700000000:R>"),
        ("a < b and c > d", "a < b and c > d"),
    ],
)
def test_command_mentions_navigation_and_timestamps_show_as_typed(typed: str, shown: str) -> None:
    """Discord draws `</name:id>` as a clickable command, `<id:browse>` as a link into the server's
    settings and `<t:…>` as a date: in the bot's public card they would read as the bot's own."""
    from cogs._text import escape_member_text

    assert escape_member_text(typed) == shown
