"""bot/guild_cache.py: one load per crowd, and a change during a load is never cached."""

from __future__ import annotations

import asyncio

import pytest

from bot.guild_cache import GuildCache


async def test_a_crowd_missing_at_once_loads_once() -> None:
    cache: GuildCache[int, str] = GuildCache()
    loads = 0
    release = asyncio.Event()

    async def load() -> str:
        nonlocal loads
        loads += 1
        await release.wait()
        return "rules"

    crowd = [asyncio.ensure_future(cache.get(1, load)) for _ in range(100)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*crowd) == ["rules"] * 100
    assert loads == 1
    assert await cache.get(1, load) == "rules" and loads == 1


async def test_a_change_during_a_load_is_not_kept() -> None:
    cache: GuildCache[int, str] = GuildCache()
    release = asyncio.Event()
    stored = "old"

    async def load() -> str:
        value = stored
        await release.wait()
        return value

    first = asyncio.ensure_future(cache.get(1, load))
    for _ in range(3):
        await asyncio.sleep(0)  # the load has read the old rules and waits
    stored = "new"
    cache.invalidate(1)  # an admin changed the rules while the old ones were being read
    release.set()
    assert await first == "old"  # its caller asked before the change
    assert await cache.get(1, load) == "new"


async def test_a_failed_load_reaches_every_waiter_and_is_not_kept() -> None:
    cache: GuildCache[int, str] = GuildCache()
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        if calls == 1:
            raise OSError("disk")
        return "rules"

    results = await asyncio.gather(cache.get(1, load), cache.get(1, load), return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)
    assert await cache.get(1, load) == "rules"


@pytest.mark.parametrize("guild", [1, 2])
async def test_guilds_are_separate(guild: int) -> None:
    cache: GuildCache[int, int] = GuildCache()

    async def load() -> int:
        return guild * 10

    assert await cache.get(guild, load) == guild * 10
