"""The layout issue 17 asks for, held by a test: bot/ is the core, testable without Discord."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The start-up and operator modules, the only ones in bot/ that may import discord (issue 17 item 1).
DISCORD_ALLOWED = {
    "bot/__main__.py",
    "bot/app.py",
    "bot/startup.py",
    "bot/invite.py",
    "bot/check.py",
    "bot/cli.py",
    "bot/metrics.py",
    "bot/monitoring.py",
    "bot/healthcheck.py",
}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-local imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_bot_imports_discord_only_in_its_start_up_and_operator_modules() -> None:
    offenders = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "bot").rglob("*.py")
        if str(path.relative_to(ROOT)) not in DISCORD_ALLOWED
        and any(name == "discord" or name.startswith("discord.") for name in imported_modules(path))
    )
    assert offenders == []


def test_the_scan_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from discord import ui\n    return ui\n")
    assert "discord" in imported_modules(module)
