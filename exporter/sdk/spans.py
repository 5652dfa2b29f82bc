"""Reading finished spans: attribute values as the record can hold them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.util.types import AttributeValue

from exporter.archive.model import MAX_COUNT

__all__ = ["ROUND_DIGITS", "bounded_count", "nonempty_str", "span_attrs"]

ROUND_DIGITS: Final = 6  # seconds and dollars are kept to the microsecond and micro-dollar


def span_attrs(span: ReadableSpan) -> Mapping[str, AttributeValue]:
    return span.attributes or {}


def nonempty_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def bounded_count(value: object) -> int | None:
    """A count or stage number from an attribute: what a record can hold (0..2**53), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if 0 <= value <= MAX_COUNT else None
