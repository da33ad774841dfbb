"""The message ids the code marks for translation, read from the source as xgettext reads it: the literal
first argument of `_(…)`, `Message(…)`, `_n(…)` / `Plural(…)` (their one and other forms) and
`locale_str(…)` (a name there — a command's, option's or choice's, see `is_name` — is catalogued as
"/name")."""

from __future__ import annotations

import ast
from pathlib import Path

from bot.i18n import is_name, needs_translation

_MARKERS = {"_", "Message", "_n", "Plural", "locale_str"}
ROOT = Path(__file__).resolve().parents[2]


def marked(paths: list[Path] | None = None) -> dict[str, tuple[str, ...]]:
    """msgid → its plural's other form (a 1-tuple) or () for every marked string under bot/ and cogs/."""
    found: dict[str, tuple[str, ...]] = {}
    files = paths or sorted([*ROOT.joinpath("bot").rglob("*.py"), *ROOT.joinpath("cogs").rglob("*.py")])
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            name = node.func.id
            if name not in _MARKERS:
                continue
            literals = [
                a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
            ]
            if not literals:
                continue
            if name in ("_n", "Plural") and len(literals) >= 2:
                found[literals[0]] = (literals[1],)
            elif name == "locale_str" and is_name(literals[0]):
                found["/" + literals[0]] = ()
            elif needs_translation(literals[0]):
                found[literals[0]] = ()
    return found
