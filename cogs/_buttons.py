"""Buttons one feature shows and another answers: their look and custom_id live here, so neither feature
imports the other's private modules (cogs/jobs/ shows Showcase under a video; cogs/showcase/ answers it).
"""

from __future__ import annotations

from bot.i18n import _
from cogs._ui import IdButton


class ShowcaseLook(IdButton, kind="show"):
    """The Showcase button under a finished video, `kling:show:<job id>`, as shown. What a press does is
    cogs/showcase/'s ShowcaseButton, a subclass with the same custom_id, which that cog registers."""

    label, emoji = _("Showcase"), "🏆"
