"""Carrying the current batch, stage and item (and the OTel context) into other threads.

asyncio needs nothing: every task starts with a copy of the context of the code that created
it. A thread starts with an empty context, so work handed to one must take a copy along.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def propagate(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap ``fn`` to run in a copy of the context current now, wherever it is called.

    Use it for threads you start yourself: ``threading.Thread(target=propagate(work))``.
    Each call runs in its own copy, so the wrapper may be called from many threads at once.
    """
    captured = contextvars.copy_context()

    @functools.wraps(fn)
    def run_in_captured_context(*args: P.args, **kwargs: P.kwargs) -> R:
        return captured.copy().run(fn, *args, **kwargs)

    return run_in_captured_context


class ContextThreadPoolExecutor(ThreadPoolExecutor):
    """A ThreadPoolExecutor whose ``submit`` and ``map`` run work in the submitter's context.

    Items submitted from inside a stage land in that stage and its batch.
    """

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        """Schedule ``fn(*args, **kwargs)`` in a copy of the caller's current context."""
        context = contextvars.copy_context()
        return super().submit(functools.partial(context.run, fn, *args, **kwargs))
