"""bot/message_pictures.py: a message's pictures from its raw payload, trusting nothing in it."""

from __future__ import annotations

from typing import Any

from bot.message_pictures import complete_attachments, message_pictures


def attachment(name: str, **fields: Any) -> dict[str, Any]:
    return {"id": "1", "filename": name, "url": f"https://cdn.example/{name}", **fields}


def test_attachments_then_embeds_then_what_a_forward_carries_at_most_two() -> None:
    message = {
        "attachments": [attachment("a.png", content_type="image/png", size=10)],
        "embeds": [{"image": {"url": "https://x.example/p.jpg", "proxy_url": "https://media/p.jpg"}}],
        "message_snapshots": [{"message": {"attachments": [attachment("c.png", content_type="image/png")]}}],
    }
    found = message_pictures(message)
    assert [(r.filename, r.size) for r in found] == [("a.png", 10), ("p.jpg", 0)]
    forward = {"attachments": [], "message_snapshots": message["message_snapshots"]}
    assert [r.filename for r in message_pictures(forward)] == ["c.png"]


def test_without_content_type_or_size_a_picture_is_known_by_its_name() -> None:
    found = message_pictures(
        {"attachments": [attachment("bare.webp"), attachment("clip.mp4", width=9, height=9)]}
    )
    assert [(r.filename, r.size, r.content_type) for r in found] == [("bare.webp", 0, None)]
    assert [
        r.filename for r in message_pictures({"attachments": [attachment("noext", width=640, height=480)]})
    ] == ["noext"]


def test_hostile_shapes_are_skipped_not_raised() -> None:
    message: dict[str, Any] = {
        "attachments": ["x", {"url": 5}, attachment("a.png", content_type="image/png", size=-3, width="9")],
        "embeds": [None, {"image": "no"}],
        "message_snapshots": "no",
    }
    [ref] = message_pictures(message)
    assert ref.size == 0 and ref.width is None


def test_missing_attachment_fields_are_filled_for_discord_py() -> None:
    bare = {"id": "1", "url": "https://cdn.example/a"}
    payload: dict[str, Any] = {
        "data": {"resolved": {"messages": {"9": {"attachments": [bare], "message_snapshots": []}}}},
    }
    complete_attachments(payload)
    assert bare == {
        "id": "1",
        "url": "https://cdn.example/a",
        "size": 0,
        "filename": "attachment",
        "proxy_url": bare["url"],
    }
