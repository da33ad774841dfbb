"""Buttons posted before the Discord side moved into feature packages still work after it: each
persistent button is one DynamicItem class that builds and parses its own custom_id, and the ids it
builds are byte-identical to those main posted (written here as literals, as they were built then)."""

from __future__ import annotations

import re

import discord
import pytest

from cogs.jobs._cancel import CancelButton
from cogs.jobs._cards import result_buttons
from cogs.jobs._results import DeleteButton, ExtendButton, RemixButton, RetryButton
from cogs.showcase._pages import GalleryButton, HistoryButton, gallery_page, history_page
from cogs.showcase._post import ShowcaseButton, VoteButton, VoteView

# (class, custom_id as main posted it, the id of the item the class reads back from it: a page button
# is always read back as a "next" one, since the direction only kept two ids on one message apart)
OLD_IDS = [
    (CancelButton, "kling:cancel:42", "kling:cancel:42"),
    (RetryButton, "kling:retry:42", "kling:retry:42"),
    (RemixButton, "kling:remix:42", "kling:remix:42"),
    (ExtendButton, "kling:extend:42", "kling:extend:42"),
    (DeleteButton, "kling:delete:42", "kling:delete:42"),
    (ShowcaseButton, "kling:show:42", "kling:show:42"),
    (VoteButton, "kling:vote:7", "kling:vote:7"),
    (GalleryButton, "kling:gal:v:0:3:p", "kling:gal:v:0:3:n"),
    (GalleryButton, "kling:gal:n:12345:0:n", "kling:gal:n:12345:0:n"),
    (HistoryButton, "kling:hist:2:p", "kling:hist:2:n"),
]


@pytest.mark.parametrize(("item", "custom_id", "read_back"), OLD_IDS)
async def test_an_old_custom_id_is_read_by_its_class(
    item: type[discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]]], custom_id: str, read_back: str
) -> None:
    # What discord.py does with a press: the class's own template, then its from_custom_id.
    match = item.__discord_ui_compiled_template__.fullmatch(custom_id)
    assert match is not None
    parsed = await item.from_custom_id(None, None, match)  # type: ignore[arg-type]
    assert type(parsed) is item and parsed.custom_id == read_back


def test_no_two_button_classes_read_the_same_id() -> None:
    for _, custom_id, _ in OLD_IDS:
        readers = {i for i, _, _ in OLD_IDS if i.__discord_ui_compiled_template__.fullmatch(custom_id)}
        assert len(readers) == 1, custom_id


@pytest.mark.parametrize(
    ("built", "old"),
    [
        (lambda: CancelButton(42), "kling:cancel:42"),
        (lambda: RetryButton(42), "kling:retry:42"),
        (lambda: RemixButton(42), "kling:remix:42"),
        (lambda: ExtendButton(42), "kling:extend:42"),
        (lambda: DeleteButton(42), "kling:delete:42"),
        (lambda: ShowcaseButton(42), "kling:show:42"),
        (lambda: VoteButton(7), "kling:vote:7"),
    ],
)
def test_a_class_builds_the_id_main_built(built: object, old: str) -> None:
    item = built()  # type: ignore[operator]
    assert item.custom_id == old


@pytest.mark.asyncio
async def test_the_posted_views_carry_main_s_ids_labels_and_styles() -> None:
    assert CancelButton(42).to_component_dict() == {
        "type": 2,
        "style": discord.ButtonStyle.secondary.value,
        "label": "Cancel",
        "custom_id": "kling:cancel:42",
        "disabled": False,
    }

    class Job:
        id, guild_id = 42, 1

    buttons = [b.to_component_dict() for b in result_buttons(Job())]  # type: ignore[arg-type]
    assert [(b["label"], b["custom_id"], b["style"]) for b in buttons] == [
        ("Retry", "kling:retry:42", 2),
        ("Remix", "kling:remix:42", 2),
        ("Extend", "kling:extend:42", 2),
        ("Showcase", "kling:show:42", 2),
        ("Delete", "kling:delete:42", 4),
    ]
    assert all(re.fullmatch(r"kling:\w+:42", b["custom_id"]) for b in buttons)


def test_the_vote_and_page_views_carry_main_s_ids() -> None:
    vote = VoteView(7, 3).to_components()[0]["components"][0]
    assert (vote["custom_id"], vote["label"], vote["style"]) == ("kling:vote:7", "Vote (3)", 1)
    gallery = gallery_page([], {}, sort="votes", member_id=None, page=1, pages=3)
    rows = [c for c in gallery.to_components() if c["type"] == 1]
    assert [c["custom_id"] for row in rows for c in row["components"]] == [
        "kling:gal:v:0:0:p",
        "kling:gal:v:0:i",
        "kling:gal:v:0:2:n",
    ]
    history = history_page([], {}, page=0, pages=1)
    rows = [c for c in history.to_components() if c["type"] == 1]
    assert [(c["custom_id"], c["disabled"]) for row in rows for c in row["components"]] == [
        ("kling:hist:0:p", True),
        ("kling:hist:i", True),
        ("kling:hist:0:n", True),
    ]
