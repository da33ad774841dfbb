"""``python -m tests.fakes.sunra_server``: serve a fake sunra (see the package docstring)."""

from __future__ import annotations

from tests.fakes.sunra_server._process import main

main()
