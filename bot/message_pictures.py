"""The pictures of a Discord message, read from its raw payload (the Animate menu's target, or the same
message fetched again after a restart), trusting nothing in it.

A message carries pictures as attachments, as embedded images (a link's preview, a bot's embed) and, when
it was forwarded, inside its `message_snapshots` (Discord's "forward" keeps the original's attachments and
embeds there; the forwarding message itself has none). Discord sometimes leaves out an attachment's
`content_type`, and some clients its `size`: a picture is then known by its file name's extension and
its size is unknown (0) until downloaded, when the download checks it. Shapes per Discord's Message
object documentation (docs/resources/message#message-object, #message-snapshot-object).
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterator, Mapping
from typing import Any

from bot.request import AttachmentRef

MAX_PICTURES = 2
MAX_FILENAME = 200


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _kind(filename: str) -> str:
    guessed, _ = mimetypes.guess_type(filename.lower())
    return (guessed or "").split("/", 1)[0]


def is_picture(attachment: Mapping[str, Any]) -> bool:
    """An image by its content type; without one, by its file name (a video has a width too), else by
    having a width and height."""
    content_type = _str(attachment.get("content_type"))
    if content_type is not None:
        return content_type.lower().startswith("image/")
    kind = _kind(_str(attachment.get("filename")) or "")
    if kind:
        return kind == "image"
    return bool(_int(attachment.get("width")) and _int(attachment.get("height")))


def _attachment_ref(attachment: Mapping[str, Any]) -> AttachmentRef | None:
    url = _str(attachment.get("url"))
    if url is None or not is_picture(attachment):
        return None
    return AttachmentRef(
        url=url,
        filename=(_str(attachment.get("filename")) or "picture")[:MAX_FILENAME],
        content_type=_str(attachment.get("content_type")),
        size=_int(attachment.get("size")) or 0,
        width=_int(attachment.get("width")),
        height=_int(attachment.get("height")),
    )


def _embedded_ref(embed: Mapping[str, Any]) -> AttachmentRef | None:
    # Fetched through Discord's media proxy only, never from the URL the author chose.
    for key in ("image", "thumbnail"):
        media = embed.get(key)
        if not isinstance(media, Mapping):
            continue
        proxy = _str(media.get("proxy_url"))
        if proxy is None:
            continue
        name = (_str(media.get("url")) or proxy).split("?", 1)[0].rsplit("/", 1)[-1] or "embedded"
        return AttachmentRef(
            url=proxy,
            filename=name[:MAX_FILENAME],
            size=0,
            width=_int(media.get("width")),
            height=_int(media.get("height")),
        )  # one picture per embed: a preview's thumbnail is the same picture as its image
    return None


def _layers(message: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield message
    snapshots = message.get("message_snapshots")
    for snapshot in snapshots if isinstance(snapshots, list) else ():
        inner = snapshot.get("message") if isinstance(snapshot, Mapping) else None
        if isinstance(inner, Mapping):
            yield inner


def message_pictures(message: Mapping[str, Any]) -> list[AttachmentRef]:
    """The message's pictures in order, at most MAX_PICTURES: attachments, then embedded images, of the
    message and then of what it forwards. Embedded ones have an unknown size (0)."""
    found: list[AttachmentRef] = []
    for layer in _layers(message):
        attachments = layer.get("attachments")
        embeds = layer.get("embeds")
        candidates = [
            *(
                _attachment_ref(a)
                for a in (attachments if isinstance(attachments, list) else ())
                if isinstance(a, Mapping)
            ),
            *(
                _embedded_ref(e)
                for e in (embeds if isinstance(embeds, list) else ())
                if isinstance(e, Mapping)
            ),
        ]
        for ref in candidates:
            if ref is not None and not any(ref.url == seen.url for seen in found):
                found.append(ref)
    return found[:MAX_PICTURES]


def _attachment_lists(payload: Mapping[str, Any]) -> Iterator[list[Any]]:
    data = payload.get("data")
    resolved = data.get("resolved") if isinstance(data, Mapping) else None
    messages: list[Any] = []
    if isinstance(resolved, Mapping):
        attachments = resolved.get("attachments")
        if isinstance(attachments, Mapping):
            yield list(attachments.values())
        found = resolved.get("messages")
        if isinstance(found, Mapping):
            messages += found.values()
    if isinstance(payload.get("message"), Mapping):
        messages.append(payload["message"])
    for message in messages:
        if isinstance(message, Mapping):
            for layer in _layers(message):
                if isinstance(layer.get("attachments"), list):
                    yield layer["attachments"]


def complete_attachments(payload: dict[str, Any]) -> None:
    """Fills in, in place, the attachment fields discord.py requires and Discord may leave out of an
    INTERACTION_CREATE payload (`size` as 0 = unknown, `filename`, `proxy_url`), so a message or option
    with such an attachment is parsed instead of failing before any handler can answer."""
    for attachments in _attachment_lists(payload):
        for attachment in attachments:
            if isinstance(attachment, dict):
                if _int(attachment.get("size")) is None:
                    attachment["size"] = 0
                if _str(attachment.get("filename")) is None:
                    attachment["filename"] = "attachment"
                if _str(attachment.get("proxy_url")) is None:
                    attachment["proxy_url"] = attachment.get("url") or ""
