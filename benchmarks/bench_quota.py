"""Benchmark of the credit ledger on a real SQLite file (not run by CI).

    .venv/bin/python benchmarks/bench_quota.py [--members 200] [--jobs 10] [--checks 20]

Prints reservations per second when every member reserves at once, and the latency (p50/p99) of a
quota check (`quote`, the read /animate makes before answering) and of a reservation with that many
members acting concurrently, then of a check with nobody else waiting. Every cap is switched on (server
cap, global USD cap) so each check runs all its sums. One aiosqlite connection serves the process, so
under load the latency is mostly the wait for that connection's turn.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.quota.rules import JobOptions, QuotaSettings
from bot.quota.spending import QuotaService
from bot.store import Database
from bot.store.jobs import JobStore

GUILDS = 5
OPTIONS = JobOptions(duration=5, audio=True, voices=0)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def create_jobs(db: Database, members: int, per_member: int) -> dict[int, list[int]]:
    store = JobStore(db)
    jobs: dict[int, list[int]] = {}
    interaction = 0
    for member in range(members):
        for _ in range(per_member):
            interaction += 1
            job_id, _ = await store.create(
                interaction_id=interaction,
                guild_id=1000 + member % GUILDS,
                channel_id=1,
                user_id=member,
                state="received",
                params={},
                upload_limit=1,
                lifetime_seconds=3600,
            )
            jobs.setdefault(member, []).append(job_id)
    return jobs


async def timed(samples: list[float], action: Awaitable[object]) -> None:
    started = time.perf_counter()
    await action
    samples.append(time.perf_counter() - started)


async def reserve_all(quota: QuotaService, jobs: dict[int, list[int]]) -> list[float]:
    samples: list[float] = []

    async def member(user_id: int) -> None:
        for job_id in jobs[user_id]:
            await timed(
                samples,
                quota.reserve(
                    job_id=job_id,
                    guild_id=1000 + user_id % GUILDS,
                    user_id=user_id,
                    role_ids=(1, 2, 3),
                    options=OPTIONS,
                ),
            )

    await asyncio.gather(*(member(user_id) for user_id in jobs))
    return samples


async def check_all(quota: QuotaService, members: int, checks: int) -> list[float]:
    samples: list[float] = []

    async def member(user_id: int) -> None:
        for _ in range(checks):
            await timed(
                samples,
                quota.quote(
                    guild_id=1000 + user_id % GUILDS, user_id=user_id, role_ids=(1, 2, 3), options=OPTIONS
                ),
            )

    await asyncio.gather(*(member(user_id) for user_id in range(members)))
    return samples


def report(name: str, samples: list[float], elapsed: float) -> None:
    p50 = statistics.median(samples) * 1000
    p99 = percentile(samples, 0.99) * 1000
    rate = len(samples) / elapsed
    print(f"{name}: {len(samples)} in {elapsed:.2f} s = {rate:,.0f}/s; ", end="")
    print(f"latency p50 {p50:.2f} ms, p99 {p99:.2f} ms")


async def main(members: int, per_member: int, checks: int) -> None:
    settings = QuotaSettings(
        daily_credits=per_member * 20, guild_credits=members * per_member * 20, global_daily_usd=1_000_000
    )
    with tempfile.TemporaryDirectory() as tmp:
        db = await Database.open(Path(tmp) / "bench.sqlite3")
        try:
            quota = QuotaService(db, settings)
            jobs = await create_jobs(db, members, per_member)
            print(f"{members} concurrent members, {per_member} jobs each, SQLite file in {tmp}")

            started = time.perf_counter()
            reserve_samples = await reserve_all(quota, jobs)
            report("reservations", reserve_samples, time.perf_counter() - started)

            started = time.perf_counter()
            check_samples = await check_all(quota, members, checks)
            report("quota checks", check_samples, time.perf_counter() - started)

            # The same check with nobody else waiting: the cost of one check rather than the queue.
            started = time.perf_counter()
            alone_samples = await check_all(quota, 1, members)
            report("quota checks, one member alone", alone_samples, time.perf_counter() - started)

            started = time.perf_counter()
            await asyncio.gather(*(quota.commit(job_id) for ids in jobs.values() for job_id in ids))
            commits = members * per_member
            elapsed = time.perf_counter() - started
            print(f"commits: {commits} in {elapsed:.2f} s = {commits / elapsed:,.0f}/s")
        finally:
            await db.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=10, help="reservations per member")
    parser.add_argument("--checks", type=int, default=20, help="quota checks per member")
    args = parser.parse_args()
    asyncio.run(main(args.members, args.jobs, args.checks))
