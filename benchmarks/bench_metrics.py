"""Cost of a /metrics scrape's database reads on a large database (not run by CI).

    .venv/bin/python benchmarks/bench_metrics.py [--jobs 100000]

Fills a real SQLite file with that many finished jobs (their events and their ledger rows), then
times scrapes: the first after a start (it sums the whole ledger once), the ones after it (only rows
added since), and one whose queue waits are all new (a backlog of 5,000, the most one scrape reads).
A scrape runs on the read connection, so this is how long it can hold up the bot's other reads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.metrics import BotMetrics
from bot.store import Database, metrics as queries

STATES = ("delivered",) * 8 + ("failed", "refused")
PATH = (None, "received"), ("received", "queued"), ("queued", "submitting"), ("submitting", "submitted")


async def fill(db: Database, jobs: int) -> None:
    params = json.dumps({"prompt": "a lighthouse at dusk, the beam sweeping " * 5})
    now = time.time()
    async with db.write() as tx:
        await tx.executemany(
            "INSERT INTO jobs (interaction_id, channel_id, user_id, state, params, created_at,"
            " updated_at, deadline) VALUES (?, '1', ?, ?, ?, ?, ?, ?)",
            [(str(i), str(i % 500), STATES[i % len(STATES)], params, now, now, now) for i in range(jobs)],
        )
        await tx.executemany(
            "INSERT INTO job_events (job_id, from_state, to_state, at) VALUES (?, ?, ?, ?)",
            [(i + 1, a, b, now + k) for i in range(jobs) for k, (a, b) in enumerate(PATH)],
        )
        await tx.executemany(
            "INSERT INTO quota_ledger (guild_id, user_id, kind, job_id, allowance_delta, credits,"
            " usd_micros, charged_at, at) VALUES ('g', ?, ?, ?, ?, 5, ?, ?, ?)",
            [
                (str(i % 500), kind, i + 1, delta, usd, now, now)
                for i in range(jobs)
                for kind, delta, usd in (("reserve", -5, 350_000), ("commit", 0, 0))
            ],
        )


async def timed(label: str, metrics: BotMetrics, db: Database) -> None:
    started = time.perf_counter()
    await metrics.render(db)
    print(f"{label:<46} {(time.perf_counter() - started) * 1000:7.1f} ms")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = await Database.open(Path(tmp) / "bench.sqlite3")
        try:
            await fill(db, args.jobs)
            print(f"{args.jobs:,} finished jobs, {args.jobs * 4:,} events, {args.jobs * 2:,} ledger rows")
            metrics = BotMetrics()
            await metrics.start(db)
            await timed("first scrape after a start (whole ledger)", metrics, db)
            await timed("next scrape", metrics, db)
            await timed("next scrape", metrics, db)
            started = time.perf_counter()
            await queries.jobs_by_state(db)
            print(f"{'of which jobs by state':<46} {(time.perf_counter() - started) * 1000:7.1f} ms")
            backlog = BotMetrics()
            await backlog.render(db)
            backlog._events_cursor = 0  # every submission ever is new to it
            await timed("a scrape reading 5,000 new queue waits", backlog, db)
        finally:
            await db.close()


if __name__ == "__main__":
    asyncio.run(main())
