"""CPU-bound bulk work: how many cores this process may use, and pausing the cyclic GC.

A first index build and a cold start's count make objects by the hundred thousand, none of
which forms a cycle; the cyclic garbage collector would re-scan every one kept so far, again and
again (it more than doubled a first build). Both pause it and spread the work over the cores.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator

__all__ = ["gc_paused", "usable_cores"]


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside (reference counting still frees what is dropped)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
