"""`python -m bot` / `kling-bot`: read the settings, open the resources, run until stopped (or run one
of the terminal commands of bot/cli.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

import discord

from bot import cli, heap
from bot.app import bot_class, cancel_tasks
from bot.config import ConfigError, Settings, load_settings
from bot.fleet import FleetMismatch
from bot.image_checker import ImageChecker
from bot.logs import configure_logging
from bot.monitoring import ListenerError
from bot.store import Database
from bot.store.db import DatabaseUnreachable
from bot.sunra import SunraClient

log = logging.getLogger("bot")


def main() -> None:
    """`kling-bot [COMMAND]`: the bot itself without a command; see bot/cli.py for the others."""
    sys.exit(cli.main(sys.argv[1:], serve=serve))


def serve() -> None:
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"kling-bot: {error}", file=sys.stderr)
        sys.exit(2)
    configure_logging(settings)
    heap.tune()
    try:
        asyncio.run(run(settings))
    except discord.LoginFailure:
        log.critical("Discord rejected DISCORD_TOKEN; check the bot token in the Developer Portal")
        sys.exit(1)
    except ListenerError:
        sys.exit(1)  # its one line is logged already
    except FleetMismatch as error:
        log.critical("SHARD_COUNT: %s", error)
        sys.exit(2)
    except DatabaseUnreachable as error:
        log.critical("database: %s", error)  # names the server, never the password
        sys.exit(1)
    except KeyboardInterrupt:
        pass


async def run(settings: Settings) -> None:
    db = await Database.open(settings.database_url)
    async with (
        db,
        SunraClient(settings.sunra_base, settings.sunra_key, file_hosts=settings.url_policy()) as sunra,
        ImageChecker(
            url_policy=settings.url_policy(),
            max_workers=settings.media.decode_workers,
            download_timeout=settings.media.download_timeout_seconds,
            max_download_bytes=settings.media.max_download_bytes,
        ) as images,
        bot_class(settings)(settings, db=db, sunra=sunra, images=images) as bot,
    ):
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, stop.set)
        runner = asyncio.create_task(bot.start(settings.discord_token.get_secret_value()))
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if runner.done():
            runner.result()  # re-raises a login failure or a crash
        else:
            log.info("stopping: unfinished jobs resume at the next start")
            await bot.close()
            await asyncio.gather(runner, return_exceptions=True)
        await _end_stragglers()


async def _end_stragglers() -> None:
    """Cancels what is still running while the database and clients it uses are still open: left to
    asyncio.run, it would be cancelled after those closed and log "no active connection" tracebacks."""
    await cancel_tasks(task for task in asyncio.all_tasks() if task is not asyncio.current_task())


if __name__ == "__main__":
    main()
