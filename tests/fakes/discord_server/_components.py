"""Message components as Discord checks them: the legacy rows, and Components V2 layouts (flag 1<<15)
with Discord's 400 for a payload it refuses.

Rules from https://discord.com/developers/docs/components/reference and .../resources/message (the flag):
a V2 message has no `content` and no embeds; top-level types 1, 9, 10, 12, 13, 14, 17; at most 40
components in all (nested ones counted) and 4,000 characters of text displays; an `attachment://name`
media URL names a file of the message; a link button's URL at most 512 characters.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from tests.fakes.discord_server._records import FLAG_IS_COMPONENTS_V2, DiscordError, form_error

ACTION_ROW, BUTTON, SECTION, TEXT_DISPLAY, THUMBNAIL, MEDIA_GALLERY, FILE, SEPARATOR, CONTAINER = (
    1,
    2,
    9,
    10,
    11,
    12,
    13,
    14,
    17,
)
SELECTS = {3, 5, 6, 7, 8}
TOP_LEVEL = {ACTION_ROW, SECTION, TEXT_DISPLAY, MEDIA_GALLERY, FILE, SEPARATOR, CONTAINER}
IN_CONTAINER = TOP_LEVEL - {CONTAINER}
MAX_COMPONENTS = 40
MAX_TEXT = 4000
MAX_LINK_URL = 512


def _refuse(path: str, code: str, message: str) -> DiscordError:
    return form_error(path, code, message)


class _Walk:
    def __init__(self, attachment_names: Collection[str]) -> None:
        self.count = 0
        self.text = 0
        self.names = set(attachment_names)

    def component(self, c: Any, path: str, allowed: Collection[int]) -> None:
        if not isinstance(c, Mapping):
            raise _refuse(path, "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType")
        kind = c.get("type")
        if kind not in allowed:
            raise _refuse(f"{path}.type", "BASE_TYPE_CHOICES", f"Value must be one of {sorted(allowed)}.")
        self.count += 1
        if kind == ACTION_ROW:
            children = list(c.get("components") or [])
            if not 1 <= len(children) <= 5:
                raise _refuse(
                    f"{path}.components", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length."
                )
            for i, child in enumerate(children):
                self.component(child, f"{path}.components.{i}", {BUTTON, *SELECTS})
        elif kind == BUTTON:
            self.button(c, path)
        elif kind == TEXT_DISPLAY:
            content = str(c.get("content") or "")
            if not content:
                raise _refuse(f"{path}.content", "BASE_TYPE_REQUIRED", "This field is required")
            self.text += len(content)
        elif kind == SECTION:
            children = list(c.get("components") or [])
            if not 1 <= len(children) <= 3:
                raise _refuse(
                    f"{path}.components", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 3 in length."
                )
            for i, child in enumerate(children):
                self.component(child, f"{path}.components.{i}", {TEXT_DISPLAY})
            self.component(c.get("accessory"), f"{path}.accessory", {BUTTON, THUMBNAIL})
        elif kind == THUMBNAIL:
            self.media(c.get("media"), f"{path}.media")
        elif kind == MEDIA_GALLERY:
            items = list(c.get("items") or [])
            if not 1 <= len(items) <= 10:
                raise _refuse(f"{path}.items", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 10 in length.")
            for i, item in enumerate(items):
                self.media((item or {}).get("media"), f"{path}.items.{i}.media")
        elif kind == FILE:
            url = str((c.get("file") or {}).get("url") or "")
            if not url.startswith("attachment://"):
                raise _refuse(f"{path}.file.url", "URL_TYPE_INVALID_SCHEME", "Scheme must be attachment.")
            self.media(c.get("file"), f"{path}.file")
        elif kind == CONTAINER:
            children = list(c.get("components") or [])
            if not children:
                raise _refuse(f"{path}.components", "BASE_TYPE_BAD_LENGTH", "Must be 1 or more in length.")
            for i, child in enumerate(children):
                self.component(child, f"{path}.components.{i}", IN_CONTAINER)

    def button(self, c: Mapping[str, Any], path: str) -> None:
        if len(str(c.get("label") or "")) > 80:
            raise _refuse(f"{path}.label", "BASE_TYPE_MAX_LENGTH", "Must be 80 or fewer in length.")
        if c.get("style") == 5:
            url = str(c.get("url") or "")
            if not url or len(url) > MAX_LINK_URL:
                raise _refuse(
                    f"{path}.url", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_LINK_URL} or fewer in length."
                )
            if c.get("custom_id"):
                raise _refuse(f"{path}.custom_id", "BUTTON_LINK_CUSTOM_ID", "A link button has no custom_id.")
        elif not 1 <= len(str(c.get("custom_id") or "")) <= 100:
            raise _refuse(f"{path}.custom_id", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")

    def media(self, media: Any, path: str) -> None:
        url = str((media or {}).get("url") or "") if isinstance(media, Mapping) else ""
        if url.startswith("attachment://"):
            if url.removeprefix("attachment://") not in self.names:
                raise _refuse(
                    f"{path}.url", "UNFURLED_MEDIA_ITEM_ATTACHMENT_NOT_FOUND", "Unknown attachment."
                )
        elif not url.startswith(("https://", "http://")) or len(url) > 2048:
            raise _refuse(f"{path}.url", "URL_TYPE_INVALID_URL", "Not a well formed URL.")


def check_components(
    components: Sequence[Any],
    flags: int,
    *,
    content: str,
    embeds: Sequence[Any],
    attachment_names: Collection[str],
) -> None:
    """Raises DiscordError (400, 50035) where Discord refuses the message's components."""
    if not flags & FLAG_IS_COMPONENTS_V2:
        if len(components) > 5:
            raise _refuse("components", "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
        walk = _Walk(attachment_names)
        for i, row in enumerate(components):
            walk.component(row, f"components.{i}", {ACTION_ROW})
        return
    if content:
        raise _refuse(
            "content",
            "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
            "The content field cannot be used.",
        )
    if embeds:
        raise _refuse(
            "embeds",
            "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
            "The embeds field cannot be used.",
        )
    if not components:
        raise DiscordError(50006)
    walk = _Walk(attachment_names)
    for i, component in enumerate(components):
        walk.component(component, f"components.{i}", TOP_LEVEL)
    if walk.count > MAX_COMPONENTS:
        raise _refuse("components", "MAX_COMPONENTS_EXCEEDED", f"Must be {MAX_COMPONENTS} or fewer in total.")
    if walk.text > MAX_TEXT:
        raise _refuse("components", "MAX_TEXT_DISPLAY_LENGTH", f"Text displays exceed {MAX_TEXT} characters.")


def components_text(components: Sequence[Any]) -> str:
    """Every text display's content, in order, one per line (for mentions and for tests to read)."""
    out: list[str] = []

    def walk(items: Sequence[Any]) -> None:
        for c in items:
            if not isinstance(c, Mapping):
                continue
            if c.get("type") == TEXT_DISPLAY:
                out.append(str(c.get("content") or ""))
            walk(list(c.get("components") or []))

    walk(components)
    return "\n".join(out)


def media_urls(components: Sequence[Any]) -> list[str]:
    """The media gallery items' URLs, in order."""
    out: list[str] = []

    def walk(items: Sequence[Any]) -> None:
        for c in items:
            if not isinstance(c, Mapping):
                continue
            if c.get("type") == MEDIA_GALLERY:
                out.extend(str((i.get("media") or {}).get("url")) for i in c.get("items") or [])
            walk(list(c.get("components") or []))

    walk(components)
    return out


def buttons(components: Sequence[Any]) -> list[dict[str, Any]]:
    """Every button of the message, nested ones included, in order."""
    out: list[dict[str, Any]] = []

    def walk(items: Sequence[Any]) -> None:
        for c in items:
            if not isinstance(c, Mapping):
                continue
            if c.get("type") == BUTTON:
                out.append(dict(c))
            walk(list(c.get("components") or []))
            if isinstance(c.get("accessory"), Mapping):
                walk([c["accessory"]])

    walk(components)
    return out
