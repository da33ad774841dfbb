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


def imports_cogs(name: str) -> bool:
    return name == "cogs" or name.startswith("cogs.")


def test_bot_never_imports_cogs() -> None:
    """The core runs without the Discord side: what it needs from there (the job reporter) is handed in."""
    offenders = sorted(
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / "bot").rglob("*.py")
        for name in imported_modules(path)
        if imports_cogs(name)
    )
    assert offenders == []


def other_features_private_modules(path: Path) -> list[str]:
    """The private modules (`cogs.<feature>._x`) of another feature that a file under cogs/ imports."""
    parts = path.relative_to(ROOT).with_suffix("").parts  # ("cogs", "jobs", "_cards") or ("cogs", "_ui")
    own = parts[1] if len(parts) > 2 else None
    found = []
    for name in imported_modules(path):
        pieces = name.split(".")
        if len(pieces) >= 3 and pieces[0] == "cogs" and pieces[2].startswith("_") and pieces[1] != own:
            found.append(name)
    return found


def test_no_feature_imports_another_features_private_module() -> None:
    offenders = sorted(
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / "cogs").rglob("*.py")
        for name in other_features_private_modules(path)
    )
    assert offenders == []


def test_the_scans_see_a_crossing(tmp_path: Path) -> None:
    feature = tmp_path / "cogs" / "jobs"
    feature.mkdir(parents=True)
    (feature / "_cards.py").write_text(
        "from cogs.showcase._post import ShowcaseButton\nimport cogs.jobs._x\n"
    )
    (tmp_path / "cogs" / "_ui.py").write_text("def f():\n    import cogs.showcase._post\n")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        assert other_features_private_modules(feature / "_cards.py") == ["cogs.showcase._post"]
        assert other_features_private_modules(tmp_path / "cogs" / "_ui.py") == ["cogs.showcase._post"]
    finally:
        ROOT = saved
    assert imports_cogs("cogs.jobs._delivery") and not imports_cogs("cogsworth")
