"""Gallery and leaderboard queries with 100,000 showcased videos and 1,000,000 votes.

    .venv/bin/python benchmarks/bench_gallery.py [--showcases N] [--votes N]

Builds the database in a temporary folder through the bot's own migrations (votes go through the
triggers that keep `vote_count`), then times ShowcaseService queries as /gallery and /top make them and
prints a table: p50 and p99 in milliseconds. The target is a gallery page under 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from bot.showcase import ShowcaseService
from bot.store import Database

GUILD = 1_201_133_704_468_807_680
AUTHORS = 2_000


def prompt(i: int) -> str:
    return f"prompt {i} " * 8


def build(path: Path, showcases: int, votes: int) -> None:
    rng = random.Random(1)
    conn = sqlite3.connect(path)
    now = time.time()
    with conn:
        conn.executemany(
            "INSERT INTO jobs (id, interaction_id, guild_id, channel_id, user_id, state, params,"
            " upload_limit, created_at, updated_at, deadline)"
            " VALUES (?, ?, ?, '1', ?, 'delivered', '{}', 1, ?, ?, 0)",
            (
                (i, str(i), str(GUILD), str(10_000 + i % AUTHORS), now - (showcases - i) * 30, now)
                for i in range(1, showcases + 1)
            ),
        )
        conn.executemany(
            "INSERT INTO showcases (id, guild_id, job_id, author_id, shared_by, prompt, settings, channel_id,"
            " message_id, created_at) VALUES (?, ?, ?, ?, 'auto', ?, '5 s · audio', '5', ?, ?)",
            (
                (
                    i,
                    str(GUILD),
                    i,
                    str(10_000 + i % AUTHORS),
                    f"prompt {i} " * 8,
                    str(i),
                    now - (showcases - i) * 30,
                )
                for i in range(1, showcases + 1)
            ),
        )
        # Popular videos get most votes, as in a real server (a long tail).
        pairs: set[tuple[int, int]] = set()
        while len(pairs) < votes:
            showcase = min(showcases, int(rng.paretovariate(1.2)) * 7 % showcases + 1)
            pairs.add((showcase, rng.randrange(50_000)))
        conn.executemany(
            "INSERT INTO showcase_votes (showcase_id, user_id, at) VALUES (?, ?, ?)",
            ((s, str(u), now) for s, u in pairs),
        )
    conn.close()


async def timed(label: str, runs: int, call: object) -> tuple[str, float, float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        await call()  # type: ignore[operator]
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return label, statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--showcases", type=int, default=100_000)
    parser.add_argument("--votes", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.sqlite3"
        async with await Database.open(path):
            pass  # migrations
        started = time.perf_counter()
        build(path, args.showcases, args.votes)
        print(
            f"built {args.showcases:,} showcases and {args.votes:,} votes"
            f" in {time.perf_counter() - started:.1f} s"
        )
        async with await Database.open(path) as db:
            service = ShowcaseService(db)
            last = args.showcases // 10 - 1
            author = 10_000 + 17
            rows = [
                await timed(
                    "gallery newest, page 1", 200, lambda: service.page(GUILD, sort="newest", page=0)
                ),
                await timed(
                    "gallery newest, last page", 50, lambda: service.page(GUILD, sort="newest", page=last)
                ),
                await timed(
                    "gallery most voted, page 1", 200, lambda: service.page(GUILD, sort="votes", page=0)
                ),
                await timed(
                    "gallery most voted, page 500", 50, lambda: service.page(GUILD, sort="votes", page=500)
                ),
                await timed(
                    "gallery one member, page 1",
                    200,
                    lambda: service.page(GUILD, sort="newest", page=0, author_id=author),
                ),
                await timed("top of the week", 100, lambda: service.top(GUILD, "week")),
                await timed("top of all time", 100, lambda: service.top(GUILD, "all")),
                await timed("most active creators, month", 20, lambda: service.top_creators(GUILD, "month")),
                await timed("vote (toggle, one transaction)", 200, lambda: service.vote(42, 99_999)),
            ]
        print(f"{'query':34} {'p50 ms':>8} {'p99 ms':>8}")
        for label, p50, p99 in rows:
            print(f"{label:34} {p50:8.2f} {p99:8.2f}")


if __name__ == "__main__":
    asyncio.run(main())
