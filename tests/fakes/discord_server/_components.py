"""What the fake Discord accepts as a message's components: Components V2 layouts (message flag 1 << 15)
validated as Discord validates them, and the classic action rows otherwise. Used wherever a message is
made or edited (_messages.py), channel posts and interaction answers alike."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tests.fakes.discord_server._records import form_error

# Components V2 (message flag 1 << 15), as Discord's component reference describes them: the types a
# message may hold at its top level and inside a container, and the limits Discord enforces.
# Action row, section, text display, media gallery, file, separator; container (top level only).
V2_TOP_LEVEL = {1, 9, 10, 12, 13, 14, 17}
V2_IN_CONTAINER = {1, 9, 10, 12, 13, 14}
V2_MAX_COMPONENTS = 40  # all components, nested ones included
V2_MAX_TEXT = 4000  # characters of all text displays together
_MEDIA_URL = re.compile(r"(?:https?://\S+|attachment://[^/\s]+)")


def validate_components_v2(
    components: list[Mapping[str, Any]], attachment_names: set[str]
) -> tuple[int, str]:
    """Refuses (a 50035 form error, as Discord does) a Components V2 layout Discord would refuse: unknown
    or misplaced types, over 40 components or 4,000 characters of text, media galleries without 1-10
    items, media that is neither an http(s) URL nor `attachment://` a file of the message, custom_ids
    repeated or over 100 characters, buttons outside action rows. Returns (components, text length) and
    the text of the layout, for mentions, is read by `v2_text`."""
    count = 0
    text = 0
    custom_ids: set[str] = set()

    def media(path: str, item: Mapping[str, Any]) -> None:
        url = str((item.get("media") or {}).get("url") or "")
        if not _MEDIA_URL.fullmatch(url):
            raise form_error(f"{path}.media.url", "UNFURLED_MEDIA_ITEM_URL_INVALID", "Invalid media URL.")
        if url.startswith("attachment://") and url.removeprefix("attachment://") not in attachment_names:
            raise form_error(
                f"{path}.media.url", "UNFURLED_MEDIA_ITEM_ATTACHMENT_NOT_FOUND", "Unknown attachment."
            )
        if len(str(item.get("description") or "")) > 1024:
            raise form_error(f"{path}.description", "BASE_TYPE_MAX_LENGTH", "Must be 1024 or fewer.")

    def walk(path: str, component: Mapping[str, Any], allowed: set[int]) -> None:
        nonlocal count, text
        count += 1
        kind = int(component.get("type") or 0)
        if kind not in allowed:
            raise form_error(f"{path}.type", "COMPONENT_TYPE_INVALID", f"Component type {kind} not allowed.")
        if kind == 1:
            children = list(component.get("components") or [])
            if not 1 <= len(children) <= 5:
                raise form_error(f"{path}.components", "BASE_TYPE_BAD_LENGTH", "Must be 1 to 5 long.")
            for n, child in enumerate(children):
                walk(f"{path}.components.{n}", child, {2, 3, 5, 6, 7, 8})
        elif kind in (2, 3, 5, 6, 7, 8):
            custom_id = component.get("custom_id")
            if custom_id is not None:
                if len(str(custom_id)) > 100 or custom_id in custom_ids:
                    raise form_error(f"{path}.custom_id", "COMPONENT_CUSTOM_ID_DUPLICATED", "Bad custom_id.")
                custom_ids.add(str(custom_id))
            if len(str(component.get("label") or "")) > 80:
                raise form_error(f"{path}.label", "BASE_TYPE_MAX_LENGTH", "Must be 80 or fewer.")
            if kind == 2 and component.get("style") == 5 and len(str(component.get("url") or "")) > 512:
                raise form_error(f"{path}.url", "BASE_TYPE_MAX_LENGTH", "Must be 512 or fewer in length.")
        elif kind == 10:
            content = str(component.get("content") or "")
            if not content:
                raise form_error(f"{path}.content", "BASE_TYPE_REQUIRED", "This field is required")
            text += len(content)
        elif kind == 12:
            items = list(component.get("items") or [])
            if not 1 <= len(items) <= 10:
                raise form_error(f"{path}.items", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 10.")
            for n, item in enumerate(items):
                media(f"{path}.items.{n}", item)
        elif kind == 13:
            url = str((component.get("file") or {}).get("url") or "")
            if not url.startswith("attachment://"):
                raise form_error(f"{path}.file.url", "UNFURLED_MEDIA_ITEM_URL_INVALID", "Attachments only.")
            media(path, {"media": component.get("file")})
        elif kind == 9:
            for n, child in enumerate(component.get("components") or []):
                walk(f"{path}.components.{n}", child, {10})
            accessory = component.get("accessory")
            if accessory is None:
                raise form_error(f"{path}.accessory", "BASE_TYPE_REQUIRED", "This field is required")
            if int(accessory.get("type") or 0) == 11:
                count += 1
                media(f"{path}.accessory", accessory)
            else:
                walk(f"{path}.accessory", accessory, {2})
        elif kind == 17:
            children = list(component.get("components") or [])
            if not children:
                raise form_error(f"{path}.components", "BASE_TYPE_BAD_LENGTH", "Must not be empty.")
            for n, child in enumerate(children):
                walk(f"{path}.components.{n}", child, V2_IN_CONTAINER)

    for n, component in enumerate(components):
        walk(f"components.{n}", component, V2_TOP_LEVEL)
    if count > V2_MAX_COMPONENTS:
        raise form_error("components", "BASE_TYPE_MAX_LENGTH", f"Must be {V2_MAX_COMPONENTS} or fewer.")
    if text > V2_MAX_TEXT:
        raise form_error("components", "MAX_TEXT_LENGTH_EXCEEDED", f"Text must be {V2_MAX_TEXT} or fewer.")
    return count, text


def v2_text(components: list[Mapping[str, Any]]) -> str:
    """All text displays of a layout, one per line: what Discord reads mentions from in a V2 message."""
    out: list[str] = []
    for component in components:
        if int(component.get("type") or 0) == 10:
            out.append(str(component.get("content") or ""))
        out.append(v2_text(list(component.get("components") or [])))
    return "\n".join(t for t in out if t)


def classic_components(components: list[Mapping[str, Any]]) -> None:
    """Without the V2 flag a message holds only action rows (at most 5)."""
    if any(int(c.get("type") or 0) != 1 for c in components):
        raise form_error("components", "COMPONENT_LAYOUT_WIDTH_EXCEEDED", "V2 components need flag 32768.")


def components_text(components: list[Mapping[str, Any]]) -> str:
    """Every text display's content, in order, one per line (a card's lines, for tests to read)."""
    return v2_text(components)


def _walk(components: list[Any]) -> list[Mapping[str, Any]]:
    out: list[Mapping[str, Any]] = []
    for c in components:
        if isinstance(c, Mapping):
            out.append(c)
            out.extend(_walk(list(c.get("components") or [])))
            if isinstance(c.get("accessory"), Mapping):
                out.extend(_walk([c["accessory"]]))
    return out


def media_urls(components: list[Any]) -> list[str]:
    """The media gallery items' URLs, in order."""
    return [
        str((item.get("media") or {}).get("url"))
        for c in _walk(components)
        if c.get("type") == 12
        for item in c.get("items") or []
    ]


def buttons(components: list[Any]) -> list[dict[str, Any]]:
    """Every button of the message, nested ones included, in order."""
    return [dict(c) for c in _walk(components) if c.get("type") == 2]
