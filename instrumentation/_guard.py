"""Telemetry never breaks the host: internal errors are logged once per kind and swallowed."""

from __future__ import annotations

import logging
import threading
from typing import Final

logger: Final = logging.getLogger("instrumentation")

_reported: set[str] = set()
_lock: Final = threading.Lock()


def report_internal_error(kind: str, exc: BaseException) -> None:
    """Log ``exc`` (with its traceback) the first time something of ``kind`` fails.

    ``kind`` names what failed ("span start", "metrics", ...). Later failures of the same kind
    are not logged again, so a broken provider cannot flood the host's logs.
    """
    if _first_time(kind):
        logger.warning(
            "batch-metrics instrumentation: %s failed (%s: %s); the host keeps running, "
            "telemetry of this kind may be incomplete and further failures of this kind are "
            "not logged",
            kind,
            type(exc).__qualname__,
            exc,
            exc_info=exc,
        )


def report_bad_argument(kind: str, problem: str) -> None:
    """Log, the first time for ``kind``, that a call was ignored because of ``problem``."""
    if _first_time(kind):
        logger.warning(
            "batch-metrics instrumentation: %s ignored: %s (further cases are not logged)",
            kind,
            problem,
        )


def _first_time(kind: str) -> bool:
    with _lock:
        if kind in _reported:
            return False
        _reported.add(kind)
        return True


def reset_reported() -> None:
    """Forget which kinds were logged (for tests)."""
    with _lock:
        _reported.clear()
