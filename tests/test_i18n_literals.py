"""Every sentence a member reads goes through the catalogue: a scan of the source (as xgettext scans it)
fails when a new English literal reaches a member without `_()`.

What counts as reaching a member: the text of a reply, follow-up, edit or channel post
(`reply`, `say_privately`, `send`, `send_message`, `edit_original_response`, `edit`, `create_thread`);
a button's, select option's, text input's or modal's label, placeholder or title; a V2 text display;
the sentence of a refusal (a BotError subclass: `InputRefused("…")`, `user_message = "…"`) and of a
job's outcome (`Outcome(state, code, "…")`). A literal is a string constant or f-string whose own text
has a letter in it; a call to `_`, `_n`, `join`, `render` or a variable passes (what it holds was marked
where it was made)."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import bot
import cogs
from bot.errors import BotError

ROOT = Path(__file__).resolve().parents[1]

# Calls whose text argument (positional index, or keyword) a member reads.
TEXT_CALLS: dict[str, tuple[int | None, tuple[str, ...]]] = {
    "reply": (1, ()),
    "say_privately": (1, ()),
    "answer": (1, ()),
    "for_member": (1, ()),
    "for_channel": (1, ()),
    "send_message": (0, ("content",)),
    "send": (0, ("content",)),
    "edit_original_response": (None, ("content",)),
    "edit_message": (None, ("content",)),
    "edit": (None, ("content",)),
    "create_thread": (None, ("name", "content")),
    "Button": (None, ("label",)),
    "SelectOption": (0, ("label", "description")),
    "TextInput": (None, ("label", "placeholder", "default")),
    "Label": (None, ("text", "description")),
    "Modal": (None, ("title",)),
    "TextDisplay": (0, ("content",)),
    "MediaGalleryItem": (None, ("description",)),
    "Outcome": (2, ("message",)),
}
# Class attributes a member reads: a button's label, a refusal's sentence.
TEXT_ATTRIBUTES = {"label", "user_message", "title", "placeholder"}

# Literals that stay as they are, with the reason (path, the literal's start).
ALLOWED: dict[tuple[str, str], str] = {
    ("cogs/jobs/_cards.py", "Kling 2.6 Pro · job "): "the job's mark: how a restarted bot finds its posts",
    ("cogs/jobs/_menu.py", "yes"): "the answer the form reads (its label says yes or no in every language)",
}
# Files no member reads: the operator's terminal (`kling-bot animate`, `check`, `cli`), in English.
NOT_FOR_MEMBERS = {"bot/terminal.py", "bot/check.py", "bot/cli.py"}


def _error_classes() -> set[str]:
    """The names of every BotError subclass in bot/ and cogs/ whose constructor takes the member's
    sentence first (`InputRefused("…")`); others take an operator's detail (`VideoUnusable(detail)`)."""
    for package in (bot, cogs):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if module.name.endswith(("__main__", "simulator.server")):
                continue
            importlib.import_module(module.name)
    names: set[str] = set()
    pending: list[type] = [BotError]
    while pending:
        cls = pending.pop()
        first = [p for p in inspect.signature(cls.__init__).parameters if p != "self"][:1]
        if first == ["user_message"]:
            names.add(cls.__name__)
        pending.extend(cls.__subclasses__())
    return names


def _has_words(node: ast.expr) -> str | None:
    """The literal's text when `node` is a string literal with a letter in its own text, else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value if any(ch.isalpha() for ch in node.value) else None
    if isinstance(node, ast.JoinedStr):
        own = "".join(
            v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)
        )
        return own if any(ch.isalpha() for ch in own) else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _has_words(node.left) or _has_words(node.right)
    if isinstance(node, ast.IfExp):
        return _has_words(node.body) or _has_words(node.orelse)
    if isinstance(node, ast.BoolOp):
        return next((text for value in node.values if (text := _has_words(value))), None)
    return None


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def unmarked(path: Path, errors: set[str]) -> Iterator[tuple[int, str]]:
    """(line, literal) of every member-facing literal in `path` that is not a catalogue message."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _name(node.func)
            position, keywords = TEXT_CALLS.get(name, (None, ()))
            if name in errors:
                position, keywords = 0, ("user_message",)
            if name == "__init__" and isinstance(node.func, ast.Attribute):
                keywords = ("title", "label", "placeholder")  # a Modal's or item's super().__init__
            candidates = [kw.value for kw in node.keywords if kw.arg in keywords]
            if position is not None and len(node.args) > position:
                candidates.append(node.args[position])
            for candidate in candidates:
                text = _has_words(candidate)
                if text is not None:
                    yield node.lineno, text
        elif isinstance(node, ast.ClassDef):
            for statement in node.body:
                if isinstance(statement, ast.Assign | ast.AnnAssign):
                    targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
                    names = {t.id for t in targets if isinstance(t, ast.Name)}
                    names |= {
                        e.id
                        for t in targets
                        if isinstance(t, ast.Tuple)
                        for e in t.elts
                        if isinstance(e, ast.Name)
                    }
                    if not names & TEXT_ATTRIBUTES or statement.value is None:
                        continue
                    values = (
                        statement.value.elts if isinstance(statement.value, ast.Tuple) else [statement.value]
                    )
                    for value in values[:1]:  # `label, emoji = "…", "🎨"`: the label comes first
                        text = _has_words(value)
                        if text is not None:
                            yield statement.lineno, text


def _violations(paths: list[Path], errors: set[str]) -> list[str]:
    found = []
    for path in paths:
        shown = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
        if shown in NOT_FOR_MEMBERS:
            continue
        for line, text in unmarked(path, errors):
            if any(shown == p and text.startswith(start) for p, start in ALLOWED):
                continue
            found.append(f"{shown}:{line}: {text!r}")
    return found


def test_every_member_facing_literal_is_a_catalogue_message() -> None:
    errors = _error_classes()
    paths = sorted([*ROOT.joinpath("cogs").rglob("*.py"), *ROOT.joinpath("bot").rglob("*.py")])
    assert _violations(paths, errors) == [], "wrap these in _() and add them to every catalogue"


def test_the_scan_finds_what_it_should(tmp_path: Path) -> None:
    """The scan can fail: each kind of unmarked sentence in a sample module is found, marked ones are not."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import discord\n"
        "from bot.errors import InputRefused\n"
        "from bot.i18n import _\n"
        "class Fine(discord.ui.Modal):\n"
        "    def __init__(self) -> None:\n"
        "        super().__init__(title=_('Marked title'))\n"
        "class Bad(discord.ui.Modal):\n"
        "    def __init__(self) -> None:\n"
        "        super().__init__(title='Plain title')\n"
        "class Press:\n"
        "    label = 'Plain label'\n"
        "async def run(interaction, reply, n):\n"
        "    await reply(interaction, f'You have {n} credits.')\n"
        "    await reply(interaction, _('You have {n} credits.', n=n))\n"
        "    await interaction.response.send_message('Plain reply')\n"
        "    discord.ui.Button(label='Plain button')\n"
        "    discord.ui.TextInput(label=_('Marked'), placeholder='Plain placeholder')\n"
        "    discord.SelectOption(label='Plain option')\n"
        "    discord.ui.TextDisplay('## Plain heading')\n"
        "    discord.ui.TextDisplay(f'-# {n}')\n"
        "    raise InputRefused('Plain refusal.')\n",
        encoding="utf-8",
    )
    found = [v.split(": ", 1)[1] for v in _violations([sample], _error_classes())]
    assert sorted(found) == sorted(
        [
            "'Plain title'",
            "'Plain label'",
            "'You have  credits.'",
            "'Plain reply'",
            "'Plain button'",
            "'Plain placeholder'",
            "'Plain option'",
            "'## Plain heading'",
            "'Plain refusal.'",
        ]
    )
