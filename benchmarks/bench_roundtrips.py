"""Database round trips of one /animate before its interaction is acknowledged (not run by CI).

    .venv/bin/python benchmarks/bench_roundtrips.py [--commands 20] [--engines sqlite postgresql]

Runs the whole bot in this process against the loopback fakes (tests/world.py, as the tests do), sends
`--commands` /animate commands one after another, each from a member not seen before, each waited to
its end before the next, and counts what the process asks of its database from the moment the command
arrives to the moment the bot defers it (the acknowledgement Discord wants within 3 s): each read, and
each write transaction as BEGIN + its statements + COMMIT, which is what they cost on PostgreSQL in
round trips (bot/store/postgres.py sends BEGIN and the fleet's lock as one). Prints the first command's
count (cold caches) and the median, per engine. PostgreSQL: the server the tests use (POSTGRES_TEST_URL,
else 127.0.0.1:5432), on a database made for the run and dropped after it.

It only wraps the `Database` object's public methods (write, fetchone, fetchall, and SQLite's
write_in_one_trip where it exists: a whole transaction in one trip to the connection's thread, counted
once), so the same file runs on a checkout from before the fleet work (SQLite only) for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import os
import statistics
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import discord

from tests import world as harness
from tests.fakes.sunra_server import FakeSunra

# Set in the benchmark's own task while it waits, so its reads are not counted as the bot's.
_HARNESS = contextvars.ContextVar("harness", default=False)
FIRST_MEMBER = 7_000_000


class Trips:
    """The database calls of the process, in order, with a mark where each deferral was sent."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def add(self, what: str, count: int = 1) -> None:
        if not _HARNESS.get():
            self.log.extend([what] * count)

    def mark(self) -> None:
        self.log.append("DEFER")


def instrument(db: Any, trips: Trips) -> None:
    """Wraps the instance's write/fetchone/fetchall (a fetchone that reads through fetchall counts once)."""
    inner = contextvars.ContextVar("inner", default=False)
    fetchall, fetchone, write = db.fetchall, db.fetchone, db.write

    async def counted_fetchall(sql: str, params: Any = ()) -> Any:
        if not inner.get():
            trips.add(f"read: {sql[:70]}")
        return await fetchall(sql, params)

    async def counted_fetchone(sql: str, params: Any = ()) -> Any:
        trips.add(f"read: {sql[:70]}")
        token = inner.set(True)
        try:
            return await fetchone(sql, params)
        finally:
            inner.reset(token)

    class CountedTx:
        def __init__(self, tx: Any) -> None:
            self._tx = tx

        def __getattr__(self, name: str) -> Any:
            method = getattr(self._tx, name)

            async def call(*args: Any, **kwargs: Any) -> Any:
                trips.add(f"  in the write: {str(args[0])[:60] if args else name}")
                return await method(*args, **kwargs)

            return call

    @contextlib.asynccontextmanager
    async def counted_write(**kwargs: Any) -> AsyncIterator[Any]:
        token = inner.set(True)  # the engine's own execute() goes through write(): counted here
        try:
            async with write(**kwargs) as tx:
                trips.add("begin")
                yield CountedTx(tx)
            trips.add("commit")
        finally:
            inner.reset(token)

    db.fetchall, db.fetchone, db.write = counted_fetchall, counted_fetchone, counted_write

    # SQLite's group commit (since 8132dae): a whole transaction in one trip to the connection's thread.
    one_trip = getattr(db, "write_in_one_trip", None)
    if one_trip is not None:

        async def counted_one_trip(work: Any, **kwargs: Any) -> Any:
            trips.add("one trip: BEGIN, its statements, COMMIT")
            return await one_trip(work, **kwargs)

        db.write_in_one_trip = counted_one_trip


def before_defer(log: list[str]) -> int:
    """Round trips from the start of `log` to its first deferral mark."""
    return log.index("DEFER") if "DEFER" in log else len(log)


async def one_engine(engine: str, commands: int, show: bool) -> list[int]:
    # running_world's engine switch (tests/world.py; a checkout from before the fleet has SQLite only).
    variable = getattr(harness, "ENGINE_VARIABLE", "KLING_TEST_ENGINE")
    if engine == "postgresql":
        os.environ[variable] = "postgresql"
    else:
        os.environ.pop(variable, None)
    trips = Trips()
    original_defer = discord.InteractionResponse.defer

    async def marked_defer(self: discord.InteractionResponse, **kwargs: Any) -> Any:
        trips.mark()
        return await original_defer(self, **kwargs)

    discord.InteractionResponse.defer = marked_defer  # type: ignore[method-assign]
    counts: list[int] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-roundtrips-") as tmp:
            async with (
                FakeSunra(key=harness.SUNRA_KEY, job_seconds=0.2) as sunra,
                harness.running_world(Path(tmp), sunra=sunra) as world,
            ):
                instrument(world.db, trips)
                for number in range(commands):
                    trips.log.clear()
                    interaction = await world.animate(f"wave {number}", user_id=FIRST_MEMBER + number)
                    token = _HARNESS.set(True)
                    try:
                        await world.discord.wait_for_callback(interaction.id, timeout=30)
                        await world.ended(interaction, within=60)
                    finally:
                        _HARNESS.reset(token)
                    counts.append(before_defer(trips.log))
                    if show and number in (0, commands - 1):
                        which = "first" if number == 0 else "last"
                        print(f"{engine}, the {which} command's calls before its deferral:")
                        for call in trips.log[: before_defer(trips.log)]:
                            print(f"    {call}")
    finally:
        discord.InteractionResponse.defer = original_defer  # type: ignore[method-assign]
        if engine == "postgresql":
            with contextlib.suppress(Exception):
                from tests import postgres

                postgres.drop_kept()
    return counts


async def main(args: argparse.Namespace) -> None:
    for engine in args.engines:
        counts = await one_engine(engine, args.commands, args.show)
        print(
            f"{engine}: database round trips before the deferral, per /animate: first {counts[0]}, "
            f"median {statistics.median(counts):g} (min {min(counts)}, max {max(counts)}; "
            f"{len(counts)} commands, one at a time, each from a new member)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--commands", type=int, default=20)
    parser.add_argument("--engines", nargs="*", default=["sqlite", "postgresql"])
    parser.add_argument("--show", action="store_true", help="list the first and the last command's calls")
    asyncio.run(main(parser.parse_args()))
