"""The fake Discord's CDN: stored attachments, their signed-looking URLs, and serving their bytes."""

from __future__ import annotations

import io
import mimetypes
import secrets
import time
from typing import Any

from aiohttp import web

from tests.fakes import payloads as p
from tests.fakes.discord_server._base import FakeBase
from tests.fakes.discord_server._records import (
    _int,
    _StoredAttachment,
)


def _image_size(data: bytes) -> tuple[int, int] | None:
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            return int(im.size[0]), int(im.size[1])
    except Exception:
        return None


def _guess_content_type(filename: str, data: bytes, sent: str | None) -> str:
    if sent and sent != "application/octet-stream":
        return sent
    sniff = {
        b"\x89PNG": "image/png",
        b"\xff\xd8\xff": "image/jpeg",
        b"GIF8": "image/gif",
        b"RIFF": "image/webp",
    }
    for magic, ctype in sniff.items():
        if data.startswith(magic) and (ctype != "image/webp" or data[8:12] == b"WEBP"):
            return ctype
    if data[4:8] == b"ftyp":
        return "video/mp4"
    guessed, _ = mimetypes.guess_type(filename)
    if guessed is not None and guessed.startswith("text/"):
        guessed += "; charset=utf-8"
    return guessed or "application/octet-stream"


class CdnMixin(FakeBase):
    """The CDN of :class:`FakeDiscord`: stored attachments and their URLs."""

    def add_attachment(
        self,
        filename: str,
        data: bytes,
        content_type: str | None = None,
        *,
        width: int | None = None,
        height: int | None = None,
        channel_id: int | None = None,
        ephemeral: bool = True,
        description: str | None = None,
    ) -> dict[str, Any]:
        """Store a file and return its Discord attachment object, served at ``attachment["url"]``.

        For slash-command attachment options (``ephemeral`` like Discord's uploads there). Image
        width/height are read with Pillow unless given.
        """
        return self._store_attachment(
            filename,
            data,
            content_type,
            width=width,
            height=height,
            channel_id=channel_id or self.default_channel_id or p.snowflake(),
            ephemeral=ephemeral,
            description=description,
        )

    def _store_attachment(
        self,
        filename: str,
        data: bytes,
        content_type: str | None,
        *,
        channel_id: int,
        width: int | None = None,
        height: int | None = None,
        ephemeral: bool = False,
        description: str | None = None,
    ) -> dict[str, Any]:
        aid = p.snowflake()
        ctype = _guess_content_type(filename, data, content_type)
        if (width is None or height is None) and ctype.startswith("image/"):
            size = _image_size(data)
            if size is not None:
                width, height = size
        self._attachments[aid] = _StoredAttachment(filename, data, ctype)
        folder = "ephemeral-attachments" if ephemeral else "attachments"
        issued = int(time.time())
        query = f"?ex={issued + 86400:x}&is={issued:x}&hm={secrets.token_hex(32)}&"
        url = f"{self.url}/{folder}/{channel_id}/{aid}/{filename}{query}"
        proxy_url = f"{self.url}/media/{folder}/{channel_id}/{aid}/{filename}{query}"
        return p.attachment_payload(
            aid,
            filename,
            size=len(data),
            url=url,
            proxy_url=proxy_url,
            content_type=ctype,
            width=width,
            height=height,
            ephemeral=ephemeral,
            description=description,
        )

    async def _serve_attachment(self, request: web.Request) -> web.StreamResponse:
        stored = self._attachments.get(_int(request.match_info["attachment_id"]))
        if stored is None or stored.filename != request.match_info["filename"]:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=stored.data, headers={"Content-Type": stored.content_type})
