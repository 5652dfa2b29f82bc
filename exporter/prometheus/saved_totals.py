"""What the ledger keeps of ``serve``'s running totals, so that a restart need not count again.

The totals are written in the same ledger transaction as the decisions they follow from
(:class:`~exporter.prometheus.collector.ArchiveCollector`); a text of another layout reads
as none, and the collector then counts every live record again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from exporter.prometheus.aggregates import Aggregates
from exporter.prometheus.series import Contribution

__all__ = ["dump_totals", "load_totals"]


def dump_totals(
    aggregates: Aggregates, unusable: dict[str, str], pending: Sequence[Contribution] = ()
) -> str:
    """What the ledger keeps of the totals: counted so far, including those held back."""
    if pending:
        aggregates = aggregates.copy()
        aggregates.apply_all(pending)
    return json.dumps(
        {"aggregates": aggregates.state(), "unusable": unusable}, separators=(",", ":")
    )


def load_totals(text: str | None) -> tuple[Aggregates, dict[str, str]] | None:
    """The totals :func:`dump_totals` saved; None if none or of another layout."""
    if text is None:
        return None
    try:
        data = json.loads(text)
        loaded = Aggregates.from_state(data["aggregates"])
        unusable = {str(n): str(why) for n, why in data["unusable"].items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return None if loaded is None else (loaded, unusable)
