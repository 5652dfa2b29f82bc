"""Record timestamps: RFC 3339 as we write it, and the forms the seed's own scripts write.

The seed writes ``git log --format=%ai`` times (``2025-11-01 10:00:00 +0100``) and naive
``datetime.now().isoformat()``; other tools write RFC 3339 with leap seconds or lower-case
``t``/``z``. All are read; an instant outside the years 1-9999 in UTC is refused.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Annotated, Any, Final

from dateutil import parser as date_parser
from dateutil import tz
from pydantic import AfterValidator, BeforeValidator

__all__ = [
    "IncompleteDateError",
    "Timestamp",
    "UnknownZoneError",
    "parse_timestamp",
    "read_instant",
]


def parse_timestamp(value: Any) -> Any:
    """Accept what the seed's scripts write as well as strict ISO 8601.

    The seed writes ``git log --format=%ai`` times (``2025-11-01 10:00:00 +0100``) and naive
    ``datetime.now().isoformat()``; naive times are taken as the local time of this machine,
    which is what the seed meant by them.
    """
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)  # fast path: what we write
        except ValueError:
            parsed = None
        try:
            parsed = parsed or date_parser.isoparse(value)
        except ValueError:
            try:
                parsed = _parse_loose(value)
            except (UnknownZoneError, IncompleteDateError):
                raise
            except (ValueError, OverflowError) as exc:
                parsed = _leap_second(value)
                if parsed is None:
                    raise ValueError(f"not a date-time: {value[:40]!r}") from exc
        value = parsed
    if isinstance(value, datetime) and value.tzinfo is None:
        try:
            value = value.astimezone()
        except (OverflowError, ValueError):  # year 1 or 9999 in a zone that leaves the range
            raise ValueError("the instant is outside the years 1-9999 in UTC") from None
    return value


class IncompleteDateError(ValueError):
    """A time without its full date (``10:00``, ``Nov 1 10:00``)."""


# A zone name glued to a signed number (GMT-5, CET+1): people mean the offset, POSIX and
# dateutil read its opposite.
_POSIX_ZONE: Final = re.compile(r"\b[A-Z]{1,5}[+-]\d{1,2}(?::?\d\d)?\b")
# Two days that differ in year, month and day: what dateutil fills in for missing parts.
_FILLERS: Final = (datetime(2000, 1, 1), datetime(2001, 2, 2))


def _parse_loose(value: str) -> datetime:
    """A date-time in any form dateutil reads, with its full date and a known zone.

    dateutil completes a partial date from its default (today); parsed against two defaults
    that differ in every date part, a complete date reads the same both times.
    """
    posix = _POSIX_ZONE.search(value)
    if posix:
        raise UnknownZoneError(
            f"ambiguous time zone {posix.group()!r} (POSIX reads its sign the other way): "
            "write the offset alone (+01:00) instead"
        )
    first, second = (date_parser.parse(value, default=d, tzinfos=_known_zone) for d in _FILLERS)
    if first != second:
        raise IncompleteDateError(f"no full date in {value[:40]!r}: write year, month and day")
    return first


class UnknownZoneError(ValueError):
    """A time given in a zone by name that names no known offset (``EST``, ``IST``)."""


def _known_zone(name: str | None, offset: int | None) -> int | tzinfo | None:
    """What dateutil asks of a parsed zone: its offset, or a refusal where it would guess.

    dateutil knows numeric offsets and UTC's names (it passes their offset here) and the local
    zone's names; for any other name it would warn and return a naive time, which this module
    would then take as local time: hours off for a zone abbreviation that is often ambiguous
    (IST is Indian, Irish and Israeli time).
    """
    if offset is not None or name is None:
        return offset
    if name in time.tzname:
        return tz.tzlocal()
    raise UnknownZoneError(f"unknown time zone {name[:10]!r}: write the offset (+01:00) instead")


_LEAP_SECOND: Final = re.compile(r"(\d\d:\d\d:)60(?=[.,Zz+\- ]|$)")


def _leap_second(value: str) -> datetime | None:
    """RFC 3339 allows a leap second (``23:59:60``); Python cannot hold one: the second after."""
    if not _LEAP_SECOND.search(value):
        return None
    try:
        return date_parser.isoparse(_LEAP_SECOND.sub(r"\g<1>59", value, count=1)) + timedelta(
            seconds=1
        )
    except (ValueError, OverflowError):
        return None


def _fixed_offset(value: datetime) -> datetime:
    """Keep the offset, drop the zone rules: what a record can store and read back.

    A time in a named zone (say 02:00 in a DST gap) would otherwise compare unequal to the
    same instant read back from the file with its fixed offset. Refused: an instant outside
    the years 1-9999 in UTC (``0001-01-01T00:00:00+05:00``), which no report could show.
    """
    if type(value.tzinfo) is timezone and 1 < value.year < 9999:
        return value  # a fixed offset already (RFC 3339's), a day or more from either end
    try:
        value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError("the instant is outside the years 1-9999 in UTC") from None
    offset = value.utcoffset()
    if offset is None or isinstance(value.tzinfo, timezone):
        return value
    return value.replace(tzinfo=timezone(offset), fold=0)


Timestamp = Annotated[datetime, BeforeValidator(parse_timestamp), AfterValidator(_fixed_offset)]


def read_instant(value: str) -> datetime:
    """A record's timestamp as :data:`Timestamp` reads it (ValueError if it refuses it)."""
    parsed = parse_timestamp(value)
    if not isinstance(parsed, datetime):  # parse_timestamp gives one for every string it reads
        raise TypeError(f"not a date-time: {value[:40]!r}")
    return _fixed_offset(parsed)
