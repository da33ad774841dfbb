"""The garbage collector's settings for a crowd: the heap built at start is set aside once ready.

A crowd of commands allocates fast (each interaction, its task, its database rows and HTTP request):
CPython's cyclic collector then runs every 700 allocations and, now and then, walks every object the
process holds. The bot's heap at start (every module, the command tree, the guild cache, the catalogues)
is several times a bare discord.py client's, so those walks cost it more per command than the client:
benchmarks/crowd.py saw 140 ms of collection in the first second of 500 commands at once against the
bare client's 66 ms. Two changes, both from the standard library's `gc` module
(https://docs.python.org/3/library/gc.html):

* `settle()` (on every ready): collect, then `gc.freeze()` what is left, so later collections skip the
  start-up heap. The previous freeze is undone first (`gc.unfreeze()`), so a cache discord.py replaced
  on a new session is collected like any garbage, never kept for good.
* `tune()` (at start): the youngest generation is collected every `YOUNG_THRESHOLD` allocations rather
  than 700; garbage in cycles waits a little longer (a few MiB at most), reference counting frees the
  rest at once as before.
"""

from __future__ import annotations

import gc

# Allocations (minus deallocations) between two collections of the youngest generation (CPython: 700).
YOUNG_THRESHOLD = 10_000


def tune() -> None:
    """Raises the youngest generation's threshold; the older two keep CPython's defaults."""
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, oldest)


def settle() -> None:
    """Collects, then sets every object still alive aside from later collections (`gc.freeze`)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
