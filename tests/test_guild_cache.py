"""bot/guild_cache.py: one load per crowd, and a change during a load is never cached."""

from __future__ import annotations

import asyncio

import pytest

from bot.guild_cache import GroupRead, GuildCache


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


async def test_group_read_answers_a_crowd_in_few_reads() -> None:
    reads: list[list[int]] = []

    async def load_many(users: list[int]) -> dict[int, int]:
        reads.append(users)
        await asyncio.sleep(0.01)
        return {user: user * 2 for user in users if user != 13}

    group: GroupRead[str, int, int] = GroupRead()
    results = await asyncio.gather(
        *(group.get("guild", user, load_many) for user in range(100)), return_exceptions=True
    )
    assert results[:13] == [user * 2 for user in range(13)]
    assert results[14:] == [user * 2 for user in range(14, 100)]
    assert isinstance(results[13], LookupError)  # an answer without the item is an error, not a hang
    assert len(reads) <= 2 and sorted(user for read in reads for user in read) == list(range(100))


async def test_group_read_passes_a_failure_to_its_batch_only() -> None:
    calls = 0

    async def load_many(users: list[int]) -> dict[int, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        if calls == 1:
            raise OSError("disk")
        return {user: 1 for user in users}

    group: GroupRead[str, int, int] = GroupRead()
    first = await asyncio.gather(group.get("g", 1, load_many), return_exceptions=True)
    assert isinstance(first[0], OSError)
    assert await group.get("g", 2, load_many) == 1


async def test_prime_reads_the_missing_keys_together_and_keeps_only_what_nothing_changed() -> None:
    cache: GuildCache[int, str] = GuildCache()
    assert await cache.get(1, _value("cached")) == "cached"
    asked: list[list[int]] = []
    release = asyncio.Event()

    async def load_many(keys: list[int]) -> dict[int, str]:
        asked.append(keys)
        await release.wait()
        return {key: f"read {key}" for key in keys if key != 4}  # 4: the read found nothing for it

    alone = asyncio.ensure_future(cache.get(6, _value("loaded alone")))  # a load of its own under way
    priming = asyncio.ensure_future(cache.prime([1, 2, 3, 4, 5, 6, 2], load_many))
    await asyncio.sleep(0)
    cache.invalidate(3)  # an admin changed server 3 while the read was under way
    own_reads: list[int] = []

    def counted(key: int, value: str):  # type: ignore[no-untyped-def]
        async def load() -> str:
            own_reads.append(key)
            return value

        return load

    # Commands arriving meanwhile wait for the read under way rather than making their own.
    waiting = [asyncio.ensure_future(cache.get(key, counted(key, "own read"))) for key in (2, 4, 4, 5)]
    await asyncio.sleep(0)
    release.set()
    assert await priming == 2  # 2 and 5; not 3 (changed), 4 (not found), 6 (its own load), 1 (cached)
    assert asked == [[2, 3, 4, 5]]  # once, together, without the cached, the loading, nor the repeat
    assert await asyncio.gather(*waiting) == ["read 2", "own read", "own read", "read 5"]
    assert own_reads == [4]  # the key the read lacked: read once by its waiters
    assert await alone == "loaded alone"
    assert await cache.get(1, _value("again")) == "cached"
    assert await cache.get(3, _value("after the change")) == "after the change"
    assert await cache.get(5, _value("again")) == "read 5"
    assert await cache.prime([1, 2], load_many) == 0 and len(asked) == 1  # nothing missing: no read


async def test_a_failed_prime_keeps_nothing_and_its_waiters_read_for_themselves() -> None:
    cache: GuildCache[int, str] = GuildCache()
    release = asyncio.Event()

    async def load_many(keys: list[int]) -> dict[int, str]:
        await release.wait()
        raise OSError("disk")

    priming = asyncio.ensure_future(cache.prime([1], load_many))
    await asyncio.sleep(0)
    waiter = asyncio.ensure_future(cache.get(1, _value("read by the waiter")))
    await asyncio.sleep(0)
    release.set()
    with pytest.raises(OSError):
        await priming
    assert await waiter == "read by the waiter"
    assert await cache.get(1, _value("again")) == "read by the waiter"


def _value(value: str):  # type: ignore[no-untyped-def]
    async def load() -> str:
        return value

    return load
