"""A per-server cache of settings that only this process changes (block lists, voices, quota rules).

A crowd's commands all miss an empty cache at the same instant: the first miss loads, the others wait
for that one load instead of each sending the same read to the database. A change made while a load is
under way makes that load's result stale, so it is handed to its waiters but not kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class GuildCache(Generic[K, V]):
    def __init__(self) -> None:
        self._values: dict[K, V] = {}
        self._loading: dict[K, asyncio.Future[V]] = {}
        self._generation: dict[K, int] = {}

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The cached value, or the result of one `load()` shared by every caller that asks meanwhile;
        an error of `load` reaches every one of them and nothing is kept."""
        if key in self._values:
            return self._values[key]
        pending = self._loading.get(key)
        if pending is None:
            generation = self._generation.get(key, 0)
            pending = self._loading[key] = asyncio.ensure_future(self._load(key, load, generation))
            pending.add_done_callback(lambda done: self._forget_load(key, done))
        return await asyncio.shield(pending)

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
