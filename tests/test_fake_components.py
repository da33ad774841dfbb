"""The fake Discord refuses the Components V2 payloads Discord refuses, so a test passing against it
means Discord would take the message."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes.discord_server._components import classic_components, v2_text, validate_components_v2
from tests.fakes.discord_server._records import DiscordError


def text(content: str) -> dict[str, Any]:
    return {"type": 10, "content": content}


def gallery(*urls: str) -> dict[str, Any]:
    return {"type": 12, "items": [{"media": {"url": url}} for url in urls]}


def row(*custom_ids: str) -> dict[str, Any]:
    return {
        "type": 1,
        "components": [{"type": 2, "style": 1, "label": "x", "custom_id": c} for c in custom_ids],
    }


def test_a_card_with_text_a_gallery_and_buttons_is_taken() -> None:
    card = {"type": 17, "components": [text("# hi <@1>"), gallery("attachment://v.mp4"), row("a", "b")]}
    assert validate_components_v2([card], {"v.mp4"}) == (
        6,
        len("# hi <@1>"),
    )  # container, text, gallery, row, 2 buttons
    assert v2_text([card]) == "# hi <@1>"


@pytest.mark.parametrize(
    ("components", "files"),
    [
        ([gallery("attachment://other.mp4")], {"v.mp4"}),  # names no file of the message
        ([gallery("ftp://example.com/v.mp4")], set()),
        ([gallery(*["https://example.com/v.mp4"] * 11)], set()),  # 1-10 items
        ([{"type": 12, "items": []}], set()),
        ([text("x" * 4001)], set()),  # 4,000 characters of text in all
        ([text("")], set()),
        ([row("a"), row("a")], set()),  # custom_ids are unique in a message
        ([{"type": 17, "components": [{"type": 17, "components": [text("x")]}]}], set()),  # no nesting
        ([{"type": 2, "style": 1, "label": "x", "custom_id": "a"}], set()),  # a button outside a row
        ([text("x")] * 41, set()),  # 40 components at most
    ],
)
def test_what_discord_refuses_the_fake_refuses(components: list[dict[str, Any]], files: set[str]) -> None:
    with pytest.raises(DiscordError) as refused:
        validate_components_v2(components, files)
    assert refused.value.code == 50035


def test_a_classic_message_holds_only_action_rows() -> None:
    classic_components([row("a")])
    with pytest.raises(DiscordError):
        classic_components([text("needs the V2 flag")])
