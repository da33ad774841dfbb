"""`kling-bot` and its subcommands: argument parsing and dispatch, nothing more.

`kling-bot` alone runs the bot (bot/__main__.py); `kling-bot check` checks the configuration
(bot/check.py), `kling-bot animate` makes one video from a terminal (bot/terminal.py) and
`kling-bot simulate` serves an offline stand-in for the sunra API (bot/simulator/) and
`kling-bot migrate-db --to postgresql://…` copies the SQLite database into PostgreSQL (bot/store/copy.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
from rich.console import Console

from bot.check import exit_code, run_checks
from bot.config import ConfigError, load_tool_settings
from bot.errors import InputRefused
from bot.request import voice_flags
from bot.simulator import Simulator, SimulatorSettings
from bot.store.copy import CopyRefused, copy_sqlite_to_postgresql
from bot.store.db import parse_database_url
from bot.sunra import MAX_VOICES
from bot.terminal import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    AnimateOptions,
    animate,
    configure_terminal_logging,
)

DEFAULT_SIMULATOR_PORT = 8787
EXIT_INTERRUPTED = 130  # the shell's convention for a Ctrl-C


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
    animate = commands.add_parser(
        "animate",
        help="make one video from a terminal (as the operator)",
        description="Makes one video with the bot's own checks, job runner, database and ledger, showing "
        "its progress; Ctrl-C cancels the job at the API. Runs as the operator: no member quota, but the "
        "global USD cap applies and the spend is recorded. Needs SUNRA_KEY, or nothing with --simulate. "
        f"Exit codes: {EXIT_OK} video written, {EXIT_FAILED} failed, {EXIT_USAGE} bad arguments or "
        f"settings, {EXIT_REFUSED} refused before submission, {EXIT_CANCELLED} cancelled.",
    )
    animate.add_argument("image", type=Path, metavar="IMAGE", help="the first frame (JPEG, PNG, WebP...)")
    animate.add_argument("prompt", metavar="PROMPT", help="what should happen in the video")
    ends = animate.add_mutually_exclusive_group()
    ends.add_argument("--end-image", type=Path, metavar="F", help="the last frame")
    ends.add_argument("--loop", action="store_true", help="end on the start image (a seamless loop)")
    animate.add_argument("--duration", type=int, choices=(5, 10), default=5, help="seconds (default 5)")
    animate.add_argument("--no-audio", action="store_true", help="a silent video (cheaper)")
    animate.add_argument(
        "--voice", action="append", default=[], metavar="ID",
        help="a voice id, referred to as <<<voice_1>>> (then <<<voice_2>>>) in the prompt; "
        f"at most {MAX_VOICES} times",
    )  # fmt: skip
    animate.add_argument("--out", type=Path, metavar="FILE", help="where to write the video (default: "
                         "next to the image, same name with .mp4)")  # fmt: skip
    animate.add_argument(
        "--simulate", action="store_true",
        help="use a built-in offline simulator instead of sunra.ai: no key, no cost, no network",
    )  # fmt: skip
    simulate = commands.add_parser(
        "simulate",
        help="serve an offline stand-in for the sunra API on this machine",
        description="Serves the sunra queue API on 127.0.0.1, answering each job with a short video made "
        "from its start image. Point SUNRA_API_URL at the printed URL to run the whole bot without spending "
        "anything (SUNRA_KEY can be any text). Stops on Ctrl-C.",
    )
    simulate.add_argument("--port", type=int, default=DEFAULT_SIMULATOR_PORT, help="port (0 = any free one)")
    add_simulator_options(simulate)
    migrate = commands.add_parser(
        "migrate-db",
        help="copy the SQLite database (DATABASE_URL) into an empty PostgreSQL database",
        description="Copies every table of the bot's SQLite database (DATABASE_URL), the credit ledger "
        "included, exactly and with the same ids, into an empty PostgreSQL database, in one transaction. "
        "Refuses while a bot uses the SQLite file, and when the target holds any row. Then set "
        "DATABASE_URL to the target and start the bot. Exit code 1 when nothing was copied.",
    )
    migrate.add_argument(
        "--to", required=True, metavar="URL", help="the target: postgresql://user:password@host:5432/name"
    )
    return parser


def add_simulator_options(parser: argparse.ArgumentParser) -> None:
    defaults = SimulatorSettings()
    group = parser.add_argument_group("simulator")
    group.add_argument(
        "--queue-seconds",
        type=float,
        default=defaults.queue_seconds,
        metavar="S",
        help="time each job waits in the queue (default %(default)s)",
    )
    group.add_argument(
        "--generate-seconds",
        type=float,
        default=defaults.generate_seconds,
        metavar="S",
        help="time each job spends generating (default %(default)s)",
    )
    group.add_argument(
        "--queue-length",
        type=int,
        default=defaults.queue_length,
        metavar="N",
        help="queue position a job starts at (default %(default)s)",
    )
    group.add_argument(
        "--failure-rate",
        type=_share,
        default=defaults.failure_rate,
        metavar="P",
        help="share of jobs that fail like a real failed generation, 0-1 (default %(default)s)",
    )
    group.add_argument(
        "--error-rate",
        type=_share,
        default=defaults.error_rate,
        metavar="P",
        help="share of API calls answered 503, 0-1 (default %(default)s)",
    )
    group.add_argument("--seed", type=int, default=None, help="makes the failures repeatable")


def simulator_settings(args: argparse.Namespace) -> SimulatorSettings:
    return SimulatorSettings(
        queue_seconds=args.queue_seconds,
        generate_seconds=args.generate_seconds,
        queue_length=args.queue_length,
        failure_rate=args.failure_rate,
        error_rate=args.error_rate,
        seed=args.seed,
    )


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def main(argv: Sequence[str], *, serve: Callable[[], None]) -> int:
    """Parses `argv` (without the program name) and runs the command; returns the exit code.
    `serve` runs the bot when no command is given."""
    args = build_parser().parse_args(argv)
    if args.command is None:
        serve()
        return EXIT_OK
    try:
        if args.command == "check":
            return _check()
        if args.command == "animate":
            try:
                voice_flags(args.voice)  # before the settings are read, like argparse's own checks
            except InputRefused as refusal:
                build_parser().error(refusal.user_message)
            return _animate(args)
        if args.command == "simulate":
            return _simulate(args)
        if args.command == "migrate-db":
            return _migrate_db(args.to)
    except KeyboardInterrupt:  # Ctrl-C before a command installed its own handling (while starting)
        print(f"kling-bot {args.command}: interrupted", file=sys.stderr)
        return EXIT_CANCELLED if args.command == "animate" else EXIT_INTERRUPTED
    raise AssertionError(f"unhandled command {args.command}")


def _check() -> int:
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


def _migrate_db(target_url: str) -> int:
    try:
        settings = load_tool_settings()
        target = parse_database_url(target_url)
    except (ConfigError, ValueError) as error:
        print(f"kling-bot migrate-db: {error}", file=sys.stderr)
        return EXIT_USAGE
    source = parse_database_url(settings.database_url)
    if source.path is None:
        print(
            f"kling-bot migrate-db: DATABASE_URL is {source.shown}; it copies from a SQLite database",
            file=sys.stderr,
        )
        return EXIT_USAGE
    print(f"Copying {source.shown} into {target.shown} ...", flush=True)
    try:
        report = asyncio.run(copy_sqlite_to_postgresql(source.path, target_url))
    except CopyRefused as error:
        print(f"kling-bot migrate-db: {error}", file=sys.stderr)
        return EXIT_FAILED
    for table, rows in report.tables.items():
        cleaned = report.without_nul.get(table, 0)
        also = f" ({cleaned} of them held NUL characters, copied without them)" if cleaned else ""
        print(f"  {table}: {rows} rows{also}")
    print(f"Copied {report.rows} rows in {len(report.tables)} tables. Now set DATABASE_URL={target.shown}")
    print("(with its password) and start the bot; keep the SQLite file as a backup.")
    return EXIT_OK


def _simulate(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-8s %(name)s: %(message)s")

    async def serve_until_stopped() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, stop.set)
        async with Simulator(simulator_settings(args), port=args.port) as simulator:
            # Its file URLs are on loopback: the bot fetches them only when SUNRA_FILE_HOSTS lists them.
            hosts = httpx.URL(simulator.url).netloc.decode()
            print(
                f"sunra simulator: SUNRA_API_URL={simulator.url} SUNRA_FILE_HOSTS={hosts} (any SUNRA_KEY); "
                "Ctrl-C stops it",
                flush=True,
            )
            await stop.wait()

    try:
        asyncio.run(serve_until_stopped())
    except OSError as error:
        print(f"kling-bot simulate: cannot listen on port {args.port} ({error.strerror})", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _animate(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    try:
        settings = load_tool_settings()
        if not args.simulate:
            settings.require("sunra_key")
    except ConfigError as error:
        hint = " (or try --simulate, which needs no key)" if "SUNRA_KEY" in str(error) else ""
        print(f"kling-bot animate: {error}{hint}", file=sys.stderr)
        return EXIT_USAGE
    configure_terminal_logging(console, settings)
    options = AnimateOptions(
        image=args.image,
        prompt=args.prompt,
        end_image=args.end_image,
        duration=args.duration,
        audio=not args.no_audio,
        voices=tuple(args.voice),
        loop=args.loop,
        out=args.out,
        simulate=args.simulate,
    )
    return asyncio.run(animate(settings, options, console))
