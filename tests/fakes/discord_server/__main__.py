"""``python -m tests.fakes.discord_server``: serve a fake Discord (see the package docstring)."""

from __future__ import annotations

from tests.fakes.discord_server._process import main

main()
