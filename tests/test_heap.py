"""bot/heap.py: the start-up heap is set aside once ready, and nothing it held is kept for good."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from bot import heap


@pytest.fixture(autouse=True)
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic collector frees it


def test_tune_raises_only_the_youngest_threshold() -> None:
    _, middle, oldest = gc.get_threshold()
    heap.tune()
    assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, middle, oldest)


def test_settle_sets_the_live_heap_aside_and_collects_it_again_on_the_next_ready() -> None:
    node = Node()
    ref = weakref.ref(node)
    heap.settle()
    assert gc.get_freeze_count() > 0
    del node
    gc.collect()
    assert ref() is not None  # frozen: the collector no longer looks at it
    heap.settle()  # the next ready (a new session): the old heap is collected first
    assert ref() is None
