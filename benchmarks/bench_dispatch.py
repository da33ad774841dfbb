"""One dispatcher pass with a long queue (not run by CI).

    .venv/bin/python benchmarks/bench_dispatch.py [--queued 10000] [--members 2000] [--history 100000]
        [--database-url sqlite:///…|postgresql://…]

Fills a fresh database with `--queued` waiting jobs from `--members` members and `--history` finished
ones, then times the dispatcher's passes (bot/jobs/dispatch.py `_dispatch_once`: the expired jobs, the
claim of the next job against the caps and the pace, the front of the queue's places) as the bot runs
them, alternately a pass that claims a job and one that finds the pace full and shows places, and
prints the p50/p99/max of each and the process's peak resident memory.
The claimed job's submission is not run (the runner is told it is stopping), so only the pass is timed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_ack import peak_rss_kib, percentile
from bot.config import JobSettings
from bot.image_checker import ImageChecker
from bot.jobs import JobRunner
from bot.quota.rules import QuotaSettings
from bot.quota.spending import QuotaService
from bot.store import Database
from bot.store.jobs import JobStore
from bot.sunra import SunraClient
from tests.world import Unseen


async def open_database(url: str | None, tmp: Path) -> Database:
    return await Database.open(url or tmp / "bench.sqlite3")


async def fill(db: Database, queued: int, members: int, history: int, now: float) -> None:
    params = json.dumps({"prompt": "a lighthouse at dusk, the beam sweeping", "duration": 5, "audio": True})
    rows = [
        (f"h{i}", "1", str(i % members), "delivered", params, now - 3600, now - 3600, now, now - i % 3000)
        for i in range(history)
    ] + [
        (f"q{i}", "1", str(i % members), "queued", params, now, now, now + 3600, None) for i in range(queued)
    ]
    for start in range(0, len(rows), 5000):
        async with db.write() as tx:
            await tx.executemany(
                "INSERT INTO jobs (interaction_id, channel_id, user_id, state, params, created_at,"
                " updated_at, deadline, submitted_at, start_image_url)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'https://example.invalid/a.png')",
                rows[start : start + 5000],
            )


async def vacuum(url: str) -> None:
    """What autovacuum does soon after a bulk load (110,000 new rows pass its insert threshold): the
    visibility map lets the queue's reads use the indexes alone, and the planner learns the table."""
    import asyncpg  # PostgreSQL only

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("VACUUM ANALYZE jobs")
    finally:
        await conn.close()


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-dispatch-") as tmp:
        db = await open_database(args.database_url, Path(tmp))
        clock = [time.time()]
        await fill(db, args.queued, args.members, args.history, clock[0])
        if args.database_url and args.database_url.startswith("postgres"):
            await vacuum(args.database_url)
        store = JobStore(db, clock=lambda: clock[0])
        async with SunraClient("http://127.0.0.1:9", "key") as sunra, ImageChecker() as images:
            runner = JobRunner(
                store=store,
                sunra=sunra,
                images=images,
                quota=QuotaService(db, QuotaSettings(max_concurrent_jobs=2, max_jobs_in_flight=0)),
                settings=JobSettings(),
                workdir=Path(tmp),
                clock=lambda: clock[0],
            )
            reporter = Unseen()
            runner.reporter = reporter
            runner._closing = True  # claimed jobs are not submitted: only the pass is measured
            passes: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(args.passes):
                # A pass just past the 10/s pace claims a job; the one right after it finds the pace
                # full and shows the front of the queue its places instead.
                for advance in (0.11, 0.0):
                    clock[0] += advance
                    started = time.perf_counter()
                    pause = await runner._dispatch_once()
                    passes[pause == 0.0].append(time.perf_counter() - started)
        hwm, _ = peak_rss_kib(__import__("os").getpid())
        await db.close()
    print(
        f"{args.queued:,} waiting jobs from {args.members:,} members, {args.history:,} finished; "
        f"{len(passes[True])} passes claimed a job, {len(passes[False])} did not, "
        f"{reporter.shown} places shown"
    )
    for claimed, label in ((True, "a pass that claims a job"), (False, "a pass that shows places")):
        ms = [p * 1000 for p in passes[claimed]] or [float("nan")]
        print(
            f"{label}: p50 {statistics.median(ms):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms, "
            f"max {max(ms):.1f} ms"
        )
    print(f"peak RSS of this process: {(hwm or 0) / 1024:.0f} MiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--queued", type=int, default=10_000)
    parser.add_argument("--members", type=int, default=2_000)
    parser.add_argument("--history", type=int, default=100_000)
    parser.add_argument("--passes", type=int, default=200)
    parser.add_argument("--database-url", default=None)
    asyncio.run(main(parser.parse_args()))
