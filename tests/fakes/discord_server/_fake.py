"""The fake Discord, put together from its parts (one module per concern)."""

from __future__ import annotations

from tests.fakes.discord_server._cdn import CdnMixin
from tests.fakes.discord_server._control import ControlMixin
from tests.fakes.discord_server._gateway import GatewayMixin
from tests.fakes.discord_server._interactions import InteractionsMixin
from tests.fakes.discord_server._messages import MessagesMixin
from tests.fakes.discord_server._rest import RestMixin
from tests.fakes.discord_server._state import StateMixin


class FakeDiscord(
    GatewayMixin, InteractionsMixin, MessagesMixin, RestMixin, CdnMixin, ControlMixin, StateMixin
):
    """The fake Discord. ``async with FakeDiscord() as fake`` or ``await fake.start()`` / ``stop()``.

    Parameters: ``token`` the bot token it accepts; ``port`` 0 = any free port; ``with_defaults`` builds
    the default world; ``allowed_intents`` the privileged intents the application has enabled
    (``PRIVILEGED_INTENTS`` for all; none by default, like a fresh app — IDENTIFY asking for others is
    closed with 4014 and discord.py raises PrivilegedIntentsRequired); ``heartbeat_interval`` ms;
    ``callback_timeout`` s (None = no limit); ``token_lifetime`` s.
    """
