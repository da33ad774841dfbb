"""The bot's Prometheus metrics, in a registry of its own (several bots can run in one process, as in
the tests). Counts that the database already holds (jobs by state, spend, queue waits) are read from it
at scrape time, so they survive restarts and always agree with the tables; the rest is observed where
it happens (sunra calls, the deferral, Discord's answers)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from types import SimpleNamespace

import aiohttp
import discord
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.fleet import WHOLE, ShardPlan
from bot.jobs import State
from bot.store import Database, metrics as queries
from bot.sunra import ApiCall

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MICROS_PER_USD = 1_000_000
# Discord answers that count toward its ban of an IP (10,000 in 10 minutes).
INVALID_STATUSES = frozenset({401, 403, 429})


class _FromDatabase(Collector):
    """The figures read from the database at the last scrape."""

    def __init__(self) -> None:
        self.jobs: dict[str, int] = {}
        self.spent = queries.Spent(0, 0, 0)
        self.shards = WHOLE

    def collect(self) -> Iterable[Metric]:
        jobs = GaugeMetricFamily(
            "kling_jobs",
            'Jobs in each state, from the jobs table: those of this process\'s shards ("all": every job).',
            labels=["state", "shards"],
        )
        for state in sorted({*State, *self.jobs}):
            jobs.add_metric([state, self.shards.label], self.jobs.get(state, 0))
        yield jobs
        yield CounterMetricFamily(
            "kling_credits_spent",
            "Credits of the jobs whose video the API made (committed in the quota ledger).",
            value=self.spent.credits,
        )
        yield CounterMetricFamily(
            "kling_usd_spent",
            "US dollars of the jobs whose video the API made (committed in the quota ledger).",
            value=self.spent.usd_micros / MICROS_PER_USD,
        )


class BotMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # CPU seconds, resident memory, open files (Linux)
        self.api_seconds = Histogram(
            "kling_api_request_duration_seconds",
            "sunra API calls: seconds until the answer's headers, by endpoint.",
            ["endpoint"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=self.registry,
        )
        self.api_errors = Counter(
            "kling_api_errors",
            "sunra API calls that failed, by endpoint and reason (the HTTP status, timeout, connection).",
            ["endpoint", "reason"],
            registry=self.registry,
        )
        self.acknowledgement = Histogram(
            "kling_acknowledgement_seconds",
            "/animate: seconds from the interaction's creation (its snowflake) to the deferral. "
            "Discord allows 3.",
            buckets=(0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 5.0),
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "kling_queue_wait_seconds",
            "Seconds a job waited in the bot's fair queue (queued to submitting), from job_events.",
            buckets=(0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0),
            registry=self.registry,
        )
        self.discord_rate_limited = Counter(
            "kling_discord_rate_limited",
            "429 answers from Discord's REST API, by X-RateLimit-Scope (user, global, shared).",
            ["scope"],
            registry=self.registry,
        )
        self.discord_invalid = Counter(
            "kling_discord_invalid_requests",
            "401, 403 and 429 answers from Discord (10,000 in 10 minutes get the IP banned).",
            ["status"],
            registry=self.registry,
        )
        self.process = Info(
            "kling_process",
            'This process\'s shards of the fleet (SHARD_IDS, "all" for the whole bot) and SHARD_COUNT.',
            registry=self.registry,
        )
        self.describe_process(WHOLE)
        self._from_db = _FromDatabase()
        self.registry.register(self._from_db)
        self._events_cursor: queries.EventsCursor | None = None
        self._refreshing = asyncio.Lock()

    def describe_process(self, shards: ShardPlan) -> None:
        self.process.info({"shards": shards.label, "shard_count": str(shards.count or "")})
        if hasattr(self, "_from_db"):
            self._from_db.shards = shards

    # ----- observed where it happens ---------------------------------------------------------------------

    def observe_api(self, call: ApiCall) -> None:
        """A `SunraClient` observer."""
        if call.status is not None:
            self.api_seconds.labels(call.endpoint).observe(call.seconds)
        if call.error is not None:
            self.api_errors.labels(call.endpoint, call.error).inc()

    def acknowledged(self, interaction_id: int, now: float | None = None) -> None:
        """The interaction was deferred just now. Discord's clock and ours may differ a little."""
        created = discord.utils.snowflake_time(interaction_id).timestamp()
        self.acknowledgement.observe(max(0.0, (time.time() if now is None else now) - created))

    def discord_trace(self) -> aiohttp.TraceConfig:
        """For `discord.Client(http_trace=...)`: sees every answer of Discord's REST API."""

        async def on_request_end(
            session: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestEndParams
        ) -> None:
            status = params.response.status
            if status in INVALID_STATUSES:
                self.discord_invalid.labels(str(status)).inc()
            if status == 429:
                scope = params.response.headers.get("X-RateLimit-Scope", "unknown")
                self.discord_rate_limited.labels(scope).inc()

        trace = aiohttp.TraceConfig()
        trace.on_request_end.append(on_request_end)
        return trace

    # ----- read from the database at scrape time -------------------------------------------------------

    async def start(self, db: Database) -> None:
        """Queue waits are counted from here on (earlier ones belong to an earlier process)."""
        self._events_cursor = await queries.events_cursor(db)

    async def render(self, db: Database) -> bytes:
        """The text exposition format, after reading the database's figures."""
        async with self._refreshing:
            self._from_db.jobs = await queries.jobs_by_state(db, self._from_db.shards.owned)
            self._from_db.spent = await queries.spent_after(db, self._from_db.spent)
            if self._events_cursor is not None:
                self._events_cursor, waits = await queries.queue_waits_after(db, self._events_cursor)
                for wait in waits:
                    self.queue_wait.observe(wait)
            return generate_latest(self.registry)
