"""What a write transaction costs on each engine, and what the fleet-wide advisory lock adds (not run by CI).

    .venv/bin/python benchmarks/bench_engines.py [--writes 500] [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

Times the same work on a SQLite file and on a fresh PostgreSQL database (made and dropped here):
`--writes` quota reservations one after the other (each one transaction: read the member's sums, check
the caps, write the ledger row), the same number at once (they queue for the write lock), and on
PostgreSQL one small write transaction with and without `pg_advisory_xact_lock` (exclusive=False), which
is the price of SQLite's single-writer semantics held across processes.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.quota.rules import JobOptions, QuotaSettings
from bot.quota.spending import QuotaService
from bot.store import Database
from bot.store.jobs import JobStore


async def new_jobs(db: Database, count: int, start: int) -> list[int]:
    store = JobStore(db)
    made = await asyncio.gather(
        *(
            store.create(
                interaction_id=start + i,
                guild_id=1,
                channel_id=2,
                user_id=3 + i % 50,
                state="received",
                params={},
                upload_limit=1,
                lifetime_seconds=60,
            )
            for i in range(count)
        )
    )
    return [job_id for job_id, _ in made]


async def reservations(db: Database, writes: int) -> tuple[float, float]:
    quota = QuotaService(db, QuotaSettings(daily_credits=10_000))
    options = JobOptions(5, False, 0)
    one_by_one = await new_jobs(db, writes, 1)
    started = time.perf_counter()
    for i, job_id in enumerate(one_by_one):
        await quota.reserve(job_id=job_id, guild_id=1, user_id=3 + i % 50, role_ids=(), options=options)
    sequential = (time.perf_counter() - started) / writes * 1000
    at_once = await new_jobs(db, writes, 1_000_000)
    started = time.perf_counter()
    await asyncio.gather(
        *(
            quota.reserve(job_id=job_id, guild_id=1, user_id=3 + i % 50, role_ids=(), options=options)
            for i, job_id in enumerate(at_once)
        )
    )
    return sequential, (time.perf_counter() - started) * 1000


async def small_writes(db: Database, writes: int, exclusive: bool) -> float:
    took = []
    for _ in range(writes):
        i = secrets.token_hex(8)
        started = time.perf_counter()
        async with db.write(exclusive=exclusive) as tx:
            await tx.execute("INSERT INTO meta (key, value) VALUES (?, 'x')", (f"{exclusive}{i}",))
        took.append(time.perf_counter() - started)
    return statistics.median(took) * 1000


async def main(writes: int, admin_url: str) -> None:
    print(f"{writes} reservations; ms per reservation one by one, ms for all at once")
    with tempfile.TemporaryDirectory() as folder:
        async with await Database.open(Path(folder) / "bench.sqlite3") as db:
            sequential, burst = await reservations(db, writes)
            print(f"  SQLite      {sequential:6.2f} ms each   {burst:8.0f} ms at once")
    name = f"kling_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = admin_url.rsplit("/", 1)[0] + f"/{name}"
        async with await Database.open(url) as db:
            sequential, burst = await reservations(db, writes)
            print(f"  PostgreSQL  {sequential:6.2f} ms each   {burst:8.0f} ms at once")
            # Alternated, so that neither side runs on a warmer cache or a quieter machine.
            with_lock = without = 0.0
            for _ in range(3):
                without += await small_writes(db, writes // 3, False) / 3
                with_lock += await small_writes(db, writes // 3, True) / 3
            print(
                f"one small write transaction on PostgreSQL, median: {with_lock:.3f} ms with the"
                f" advisory lock, {without:.3f} ms without (+{with_lock - without:.3f} ms)"
            )
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--writes", type=int, default=500)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    asyncio.run(main(args.writes, args.postgres))
