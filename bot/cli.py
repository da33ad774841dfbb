"""`kling-bot` and its subcommands: argument parsing and dispatch, nothing more.

`kling-bot` alone runs the bot (bot/__main__.py); `kling-bot check` checks the configuration
(bot/check.py), `kling-bot animate` makes one video from a terminal (bot/terminal.py) and
`kling-bot simulate` serves an offline stand-in for the sunra API (bot/simulator/).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Sequence

from bot.config import ConfigError, load_tool_settings

# Exit codes shared by the subcommands (documented in the README).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2  # bad arguments or settings (argparse uses 2 too)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kling-bot",
        description="Discord bot for Kling 2.6 Pro image-to-video. Without a command, runs the bot.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "check",
        help="check the configuration: token, key, database, prices, caps",
        description="Checks the Discord token, the sunra key, the database, the prices and caps, and lists "
        "every setting that differs from its default. Exit code 1 when something is wrong.",
    )
    return parser


def main(argv: Sequence[str], *, serve: Callable[[], None]) -> int:
    """Parses `argv` (without the program name) and runs the command; returns the exit code.
    `serve` runs the bot when no command is given."""
    args = build_parser().parse_args(argv)
    if args.command is None:
        serve()
        return EXIT_OK
    if args.command == "check":
        return _check()
    raise AssertionError(f"unhandled command {args.command}")


def _check() -> int:
    from bot.check import exit_code, run_checks

    try:
        settings = load_tool_settings()
    except ConfigError as error:
        print(f"FAIL settings: {error}")
        return EXIT_FAILED

    async def report() -> int:
        findings = []
        async for finding in run_checks(settings):
            print(finding.line(), flush=True)
            findings.append(finding)
        return exit_code(findings)

    return asyncio.run(report())
