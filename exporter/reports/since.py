"""``--since``: a relative duration (``7d``) or an ISO 8601 date/time, as an aware datetime."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final

from dateutil import parser as date_parser

__all__ = ["parse_since"]

_RELATIVE: Final = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``7d``, ``12h``, ``2w`` (before ``now``) or an ISO 8601 date/time; ValueError otherwise."""
    text = text.strip()
    match = _RELATIVE.fullmatch(text)
    now = now or datetime.now(UTC)
    if match:
        return now - timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])
    try:
        when = date_parser.isoparse(text)
    except (ValueError, OverflowError) as exc:
        raise ValueError(
            f"--since {text[:40]!r}: expected a duration like 7d, 12h, 2w or an ISO date"
        ) from exc
    return when if when.tzinfo else when.astimezone()
