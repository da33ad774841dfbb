"""The Bot subclass: owns nothing global; its resources are handed in and closed by the launcher."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import discord
import yarl
from discord import app_commands
from discord.ext import commands

from bot import heap
from bot.blocklist import PromptFilter
from bot.config import Settings
from bot.fleet import FleetClock, ShardLeases
from bot.guild_access import NOT_ALLOWED, guild_allowed
from bot.i18n import render
from bot.image_checker import ImageChecker
from bot.jobs import ENDED, JobRunner, Reporter
from bot.metrics import BotMetrics
from bot.monitoring import Monitor, gateway_connected
from bot.quota.spending import QuotaService
from bot.showcase import ShowcaseService
from bot.startup import wait_for_discord
from bot.store import Database
from bot.store.fleet import FleetStore
from bot.store.jobs import JobStore
from bot.sunra import SunraClient
from bot.voices import VoiceLibrary

log = logging.getLogger(__name__)

EXTENSIONS = (
    "cogs.tree",  # first: the tree's translator and error handler
    "cogs.jobs",
    "cogs.quota",
    "cogs.voices",
    "cogs.showcase",
    "cogs.unanswered",
)


def apply_discord_endpoints(settings: Settings) -> None:
    """Points discord.py at the configured REST base and gateway (a proxy, or a test's fake).

    discord.py keeps both as class attributes, so this is process-wide and must run before login.
    """
    discord.http.Route.BASE = settings.rest_base
    if settings.discord_gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


class KlingTree(app_commands.CommandTree["KlingBot"]):
    async def interaction_check(self, interaction: discord.Interaction[KlingBot], /) -> bool:
        """Every slash command and menu, before it runs: a server not on ALLOWED_GUILD_IDS gets a polite
        sentence and nothing else (an autocomplete gets no suggestions). A member's own install used in a
        server that did not add the bot is not that server's use: the list does not apply to it."""
        installed = interaction.guild_id if interaction.is_guild_integration() else None
        if guild_allowed(installed, self.client.settings.allowed_guild_ids):
            return True
        if interaction.type is discord.InteractionType.application_command:
            with contextlib.suppress(discord.HTTPException):
                await interaction.response.send_message(
                    render(NOT_ALLOWED, interaction.locale), ephemeral=True
                )
        elif interaction.type is discord.InteractionType.autocomplete:
            with contextlib.suppress(discord.HTTPException):
                await interaction.response.autocomplete([])
        return False


class KlingBot(commands.Bot):
    def __init__(
        self,
        settings: Settings,
        *,
        db: Database,
        sunra: SunraClient,
        images: ImageChecker,
        workdir: Path | None = None,
    ) -> None:
        self.metrics = BotMetrics()
        sunra.observers.append(self.metrics.observe_api)
        intents = discord.Intents.none()
        intents.guilds = True  # channel and role cache, so permissions can be computed
        plan = settings.shards
        sharding: dict[str, Any] = {}
        if isinstance(self, discord.AutoShardedClient):
            assert plan.count is not None and plan.ids is not None, "ShardedKlingBot needs SHARD_COUNT"
            sharding = {"shard_count": plan.count, "shard_ids": list(plan.ids)}
        super().__init__(
            **sharding,
            command_prefix=commands.when_mentioned,
            intents=intents,
            help_command=None,
            # A default for every message: nothing pings unless a send says so explicitly.
            allowed_mentions=discord.AllowedMentions.none(),
            max_messages=None,
            http_trace=self.metrics.discord_trace(),
            tree_cls=KlingTree,
            # Every command is a server's (installed there, used there) unless it says otherwise:
            # /animate and the Animate menu also go with a member's own install (cogs/jobs/).
            allowed_installs=app_commands.AppInstallationType(guild=True),
            allowed_contexts=app_commands.AppCommandContext(guild=True),
        )
        self.settings = settings
        self.db = db
        self.sunra = sunra
        self.images = images
        # Every time the database records or compares is the fleet's: on PostgreSQL, set by the server's
        # clock, so processes on machines whose clocks disagree still agree on leases, pace and caps.
        self.clock = FleetClock()
        self.job_store = JobStore(db, shards=plan, clock=self.clock)
        self.leases = ShardLeases(
            FleetStore(db), plan, lease_seconds=settings.shard_lease_seconds, clock=self.clock
        )
        self.quota = QuotaService(db, settings.quota, clock=self.clock)
        self.voices = VoiceLibrary(db, clock=self.clock)
        self.prompt_filter = PromptFilter(db, clock=self.clock)
        self.showcases = ShowcaseService(db, clock=self.clock)
        self.runner = JobRunner(
            clock=self.clock,
            store=self.job_store,
            sunra=sunra,
            images=images,
            quota=self.quota,
            settings=settings.jobs,
            workdir=workdir or db.data_folder / "tmp",
            allowed_guilds=settings.allowed_guild_ids,
        )
        # Set by cogs.jobs at setup: the bot's messages for each job (progress, result, fallbacks).
        self.reporter: Reporter | None = None
        self._stopping = asyncio.Event()
        self.monitor: Monitor | None = None
        if settings.http.port:
            gateway_up = functools.partial(gateway_connected, self)
            self.monitor = Monitor(
                settings.http, metrics=self.metrics, db=db, gateway_up=gateway_up, shards=plan
            )

    async def start(self, token: str, *, reconnect: bool = True) -> None:
        apply_discord_endpoints(self.settings)
        if self.monitor is not None:
            await self.monitor.start()  # before Discord answers, so /healthz can say it does not
        # A SHARD_COUNT at odds with the fleet running on the database is refused before Discord is asked.
        with self.db.unreachable_in_one_sentence():
            await self.leases.refuse_a_mismatch()
        # Discord unreachable at start (no network yet): wait with backoff rather than exit.
        if await wait_for_discord(self, token, self.settings.startup, self._stopping):
            await super().start(token, reconnect=reconnect)

    async def setup_hook(self) -> None:
        # No job of these shards is touched before they are this process's (bot/fleet.py).
        # A database lost meanwhile (a lease can take 2 x SHARD_LEASE_SECONDS) ends the start in a sentence.
        with self.db.unreachable_in_one_sentence():
            if not await self.leases.acquire(self._stopping):
                return
            self.leases.keep(on_lost=self._lease_lost)
            # Jobs recorded under another SHARD_COUNT (or none) belong to their guild's shard under this one.
            if moved := await self.job_store.reckon_shards(ENDED):
                log.info("%d unfinished job(s) moved to their guild's shard under SHARD_COUNT", moved)
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        # cogs.jobs hands in the reporter (its messages are Discord's side; bot/ does not import cogs).
        if self.reporter is None:
            raise RuntimeError("no extension set the job reporter (cogs.jobs does, in its setup)")
        self.runner.start(self.reporter)
        # Here and not in on_ready, which fires again on every reconnect.
        await self.runner.resume()
        if self.settings.shards.syncs_commands:  # one process of a fleet syncs, the others never race it
            await self.sync_commands_if_changed()

    def _lease_lost(self) -> None:
        self._lease_lost_task = asyncio.create_task(self.close(), name="lease-lost")

    # ----- the operator's allowlist of servers ------------------------------------------------------------

    async def on_ready(self) -> None:
        # The guild cache is complete now: set the start-up heap aside before the first crowd (bot/heap.py).
        heap.settle()
        await self.leave_servers_not_allowed(self.guilds)
        await self.read_server_rules_ahead(self.guilds)

    async def on_guild_join(self, guild: discord.Guild) -> None:
        if not await self.leave_servers_not_allowed([guild]):
            await self.read_server_rules_ahead([guild])

    async def read_server_rules_ahead(self, guilds: Iterable[discord.Guild]) -> None:
        """Reads these servers' quota rules and block lists into memory now, four statements for them all,
        so the first crowd after a start does not wait on them: its commands would all wait for the
        same reads, one after the other, before any of them could be recorded and acknowledged. A read
        that fails is logged and left to the first command that needs it."""
        ids = [guild.id for guild in guilds if guild_allowed(guild.id, self.settings.allowed_guild_ids)]
        if not ids:
            return
        try:
            rules, lists = await asyncio.gather(self.quota.prime(ids), self.prompt_filter.prime(ids))
        except Exception as error:
            log.warning("could not read the servers' rules ahead (%s); each is read when first needed", error)
            return
        log.info("read the rules of %d servers and the block lists of %d ahead", rules, lists)

    async def on_guild_available(self, guild: discord.Guild) -> None:
        await self.leave_servers_not_allowed([guild])

    async def leave_servers_not_allowed(self, guilds: Iterable[discord.Guild]) -> list[int]:
        """Leaves every one of these servers that is not on ALLOWED_GUILD_IDS; the ids it left."""
        left = []
        for guild in list(guilds):
            if guild_allowed(guild.id, self.settings.allowed_guild_ids):
                continue
            log.warning("leaving server %s (%s): it is not on ALLOWED_GUILD_IDS", guild.id, guild.name)
            try:
                await guild.leave()
            except discord.HTTPException as error:
                log.warning("could not leave server %s (%s)", guild.id, error.code)
                continue
            left.append(guild.id)
        return left

    async def instance_id(self) -> str:
        """A random id kept in the database, part of every post's nonce (see job_nonce, cogs/jobs)."""
        instance = await self.job_store.get_meta("instance")
        if instance is None:
            instance = secrets.token_hex(4)
            await self.job_store.set_meta("instance", instance)
        return instance

    async def close(self) -> None:
        """A clean stop (SIGTERM), within about STOP_GRACE_SECONDS plus RELEASE_SECONDS at the most: the
        leases are no longer renewed; nothing new is submitted, and the work under way (a claim, a
        submission sent, the event handlers running) has the grace to end; what is left is cancelled
        and resumes at the next start; then the leases are given back, so the process started in this
        one's place takes its shards at once."""
        self._stopping.set()
        await self.leases.stop_keeping()
        handlers = [task for task in asyncio.all_tasks() if is_event_handler(task)]
        await self.runner.stop(finishing=handlers)
        # Handlers still running would next answer through the HTTP session super().close() ends
        # ("Session is closed" tracebacks); a job they recorded resumes at the next start.
        await cancel_tasks(task for task in asyncio.all_tasks() if is_event_handler(task))
        # Only now: until here this process still wrote its shards' jobs.
        await self.leases.release()
        await super().close()
        if self.monitor is not None:
            await self.monitor.stop()

    # ----- command sync ------------------------------------------------------------------------------------

    async def sync_commands_if_changed(self) -> bool:
        """Syncs only when the command definitions changed since the last sync (hash kept in the DB):
        syncing at every start wastes one of Discord's few daily command-update slots."""
        targets: list[discord.abc.Snowflake | None] = [
            discord.Object(gid) for gid in self.settings.command_guild_ids
        ] or [None]
        synced = False
        for guild in targets:
            if guild is not None:
                self.tree.copy_global_to(guild=guild)
            key = f"commands_hash:{guild.id if guild else 'global'}"
            digest = await command_tree_hash(self.tree, guild)
            if await self.job_store.get_meta(key) == digest:
                continue
            await self.tree.sync(guild=guild)
            await self.job_store.set_meta(key, digest)
            log.info("synced application commands (%s)", key)
            synced = True
        return synced


class ShardedKlingBot(KlingBot, commands.AutoShardedBot):
    """The bot as some shards of a fleet (`SHARD_COUNT`, `SHARD_IDS`): discord.py connects those only."""


def bot_class(settings: Settings) -> type[KlingBot]:
    return ShardedKlingBot if settings.shards.sharded else KlingBot


# The names discord.py gives the tasks that run interaction handlers, views, modals and event listeners.
EVENT_TASK_PREFIXES = ("CommandTree-invoker", "discord-ui-", "discord.py: ")


def is_event_handler(task: asyncio.Task[object]) -> bool:
    return task.get_name().startswith(EVENT_TASK_PREFIXES) and task is not asyncio.current_task()


async def cancel_tasks(tasks: Iterable[asyncio.Task[object]]) -> None:
    """Cancels the tasks and waits until they have ended, whatever they raise."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def command_tree_hash(
    tree: app_commands.CommandTree[commands.Bot], guild: discord.abc.Snowflake | None
) -> str:
    """What a sync would send (install types, contexts and every localization included), hashed."""
    translator = tree.translator
    payload = [
        await command.get_translated_payload(tree, translator) if translator else command.to_dict(tree)
        for command in tree.get_commands(guild=guild)
    ]
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
