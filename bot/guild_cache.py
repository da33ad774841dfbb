"""Reads shared by a crowd: a per-server cache of settings only this process changes (block lists,
voices, quota rules), one read in flight per key (SharedRead), and group reads (GroupRead).

A crowd's commands all miss an empty cache at the same instant: the first miss loads, the others wait
for that one load instead of each sending the same read to the database. A change made while a load is
under way makes that load's result stale, so it is handed to its waiters but not kept.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar, cast

K = TypeVar("K")
V = TypeVar("V")
Item = TypeVar("Item")


# What a prime hands the waiters of a key it could not read: they read it themselves.
_NOT_READ: Any = object()


class GuildCache(Generic[K, V]):
    def __init__(self) -> None:
        self._values: dict[K, V] = {}
        self._loading: dict[K, asyncio.Future[Any]] = {}
        self._generation: dict[K, int] = {}

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The cached value, or the result of one `load()` shared by every caller that asks meanwhile
        (or of the `prime` under way for it); an error of `load` reaches every one of them and nothing
        is kept."""
        while key not in self._values:
            pending = self._loading.get(key)
            if pending is None:
                generation = self._generation.get(key, 0)
                pending = self._loading[key] = asyncio.ensure_future(self._load(key, load, generation))
                pending.add_done_callback(lambda done: self._forget_load(key, done))
            value = await asyncio.shield(pending)
            if value is not _NOT_READ:
                return cast(V, value)
            # A prime that could not read this key: its waiters read it themselves (once, together).
        return self._values[key]

    async def _load(self, key: K, load: Callable[[], Awaitable[V]], generation: int) -> V:
        value = await load()
        if self._generation.get(key, 0) == generation:
            self._values[key] = value
        return value

    def _forget_load(self, key: K, done: asyncio.Future[V]) -> None:
        if self._loading.get(key) is done:
            del self._loading[key]
        if not done.cancelled():
            done.exception()  # retrieved: a failed load is its waiters' error, not a loop warning

    async def prime(self, keys: Iterable[K], load_many: Callable[[list[K]], Awaitable[Mapping[K, V]]]) -> int:
        """Reads the values of the `keys` not yet cached nor loading, together (`load_many`: one read for
        them all, where `get` would make one each), and keeps those that nothing changed meanwhile; how
        many it kept. A `get` of one of them meanwhile waits for this read rather than making its own;
        where it failed or lacks the key, the waiters read it themselves. Raises what `load_many` raised,
        keeping nothing."""
        wanted = [key for key in dict.fromkeys(keys) if key not in self._values and key not in self._loading]
        if not wanted:
            return 0
        loop = asyncio.get_running_loop()
        generations = {key: self._generation.get(key, 0) for key in wanted}
        reading: dict[K, asyncio.Future[Any]] = {}
        for key in wanted:
            reading[key] = self._loading[key] = loop.create_future()
            reading[key].add_done_callback(functools.partial(self._forget_load, key))
        found: Mapping[K, V] = {}
        try:
            found = await load_many(wanted)
        finally:
            kept = 0
            for key, future in reading.items():
                value: Any = found.get(key, _NOT_READ)
                if value is not _NOT_READ and self._generation.get(key, 0) == generations[key]:
                    self._values[key] = value
                    kept += 1
                future.set_result(value)
        return kept

    def invalidate(self, key: K) -> None:
        """Forgets `key` after a change; a load under way when it happened is not kept."""
        self._values.pop(key, None)
        self._loading.pop(key, None)
        self._generation[key] = self._generation.get(key, 0) + 1


class SharedRead(Generic[K, V]):
    """One read in flight per key: callers that ask while it runs share its result, and nothing is kept
    after it. For figures where an answer that was current when the caller arrived (or a moment before)
    is as good as a fresh one, such as the totals an advisory quota check compares with a cap."""

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Future[V]] = {}

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        running = self._running.get(key)
        if running is None:
            running = self._running[key] = asyncio.ensure_future(load())
            running.add_done_callback(lambda done: self._forget(key, done))
        return await asyncio.shield(running)

    def _forget(self, key: K, done: asyncio.Future[V]) -> None:
        if self._running.get(key) is done:
            del self._running[key]
        if not done.cancelled():
            done.exception()


class GroupRead(Generic[K, Item, V]):
    """Group read: items asked for while a read for the same key is under way wait for it and are then
    read together, by one `load_many`, each caller getting its own item's value. The read-side twin of
    the inbox's group commit: a crowd's quota checks become a few statements instead of one each."""

    def __init__(self) -> None:
        self._pending: dict[K, dict[Item, list[asyncio.Future[V]]]] = {}
        self._running: dict[K, asyncio.Task[None]] = {}

    async def get(
        self, key: K, item: Item, load_many: Callable[[list[Item]], Awaitable[Mapping[Item, V]]]
    ) -> V:
        """Raises what `load_many` raised, or LookupError when its answer lacks `item`."""
        waiter: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(key, {}).setdefault(item, []).append(waiter)
        if key not in self._running:
            self._running[key] = asyncio.create_task(self._read(key, load_many))
        return await asyncio.shield(waiter)

    async def _read(self, key: K, load_many: Callable[[list[Item]], Awaitable[Mapping[Item, V]]]) -> None:
        try:
            while batch := self._pending.pop(key, None):
                try:
                    found = await load_many(list(batch))
                except Exception as error:
                    for waiters in batch.values():
                        for waiter in waiters:
                            _settle(waiter, error=error)
                    continue
                for item, waiters in batch.items():
                    for waiter in waiters:
                        if item in found:
                            _settle(waiter, value=found[item])
                        else:
                            _settle(waiter, error=LookupError(item))
        finally:
            del self._running[key]


def _settle(waiter: asyncio.Future[Any], *, value: Any = None, error: Exception | None = None) -> None:
    if waiter.done():
        return
    if error is None:
        waiter.set_result(value)
        return
    waiter.set_exception(error)
    # Its caller may have been cancelled and never look: retrieved here so the loop does not warn.
    waiter.add_done_callback(lambda done: done.exception())
