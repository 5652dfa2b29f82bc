"""Forking worker processes beside short helper threads.

A process must not fork while another of its threads may hold a lock (SQLite's mutexes, the
allocator's): the child would wait for it forever. Bulk work therefore forks only when
:func:`may_fork` says so, and otherwise starts its workers another way. A helper thread that
ends on its own, soon (the index's background checkpoint), is started with
:func:`start_helper` instead: every fork of the process first waits for the helpers still
running (:func:`os.register_at_fork`), so :func:`may_fork` does not count them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Final

__all__ = ["may_fork", "start_helper"]

_helpers: Final[set[threading.Thread]] = set()  # started by start_helper, not yet ended
_lock = threading.Lock()


def start_helper(target: Callable[..., object], *args: object, name: str) -> threading.Thread:
    """Start ``target(*args)`` in a thread that any fork waits for (it must end by itself and
    must not wait for the thread that forks). The interpreter waits for it at exit too."""

    def run() -> None:
        try:
            target(*args)
        finally:
            with _lock:
                _helpers.discard(threading.current_thread())

    thread = threading.Thread(target=run, name=name, daemon=False)
    with _lock:
        _helpers.add(thread)
    thread.start()
    return thread


def may_fork() -> bool:
    """Whether this process may fork: it can, and has no thread but this one and helpers."""
    if not hasattr(os, "fork"):
        return False
    with _lock:
        helpers = len(_helpers)
    # a helper that ends between the two counts makes this False: a missed fork, never a bad one
    return threading.active_count() - helpers == 1


def _wait_for_helpers() -> None:
    with _lock:
        running = list(_helpers)
    for thread in running:
        thread.join()


def _forget_helpers() -> None:
    global _lock  # noqa: PLW0603 (the child's copy may be held by a thread it does not have)
    _lock = threading.Lock()
    _helpers.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_wait_for_helpers, after_in_child=_forget_helpers)
