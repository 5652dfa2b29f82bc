"""Read queries over the index: one-off, or inside a snapshot (one read transaction)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from exporter.index.summary import RecordFilter
from exporter.util.errors import UserError

__all__ = ["Snapshot", "SumOverflowError", "query"]


class Snapshot:
    """Queries inside one read transaction of the index (see :meth:`ArchiveIndex.snapshot`)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def select(
        self, sql: str, params: Sequence[object] = (), where: RecordFilter | None = None
    ) -> list[tuple[Any, ...]]:
        """As :meth:`ArchiveIndex.select`."""
        return query(self._db, sql, params, where)


def query(
    db: sqlite3.Connection, sql: str, params: Sequence[object], where: RecordFilter | None
) -> list[tuple[Any, ...]]:
    """``sql`` with ``{where}`` replaced by the filter's condition, its parameters last."""
    condition, extra = (where or RecordFilter()).sql()
    try:
        return db.execute(sql.replace("{where}", condition), (*params, *extra)).fetchall()
    except sqlite3.OperationalError as exc:
        if str(exc) == "integer overflow":
            raise SumOverflowError from exc
        raise


class SumOverflowError(UserError):
    """A sum over the archive left SQLite's 64-bit integers: absurd counts in some records."""

    def __init__(self, operations: Iterable[str] = ()) -> None:
        names = sorted(set(operations))
        runs = f"the {', '.join(names)} runs" if names else "the selected runs"
        super().__init__(
            f"the item or token counts of {runs} added up to more than 2**63, so their totals "
            "are not exact: some records hold absurd counts (each near 2**53, about 9.0e15); "
            "once they are gone, `batch-metrics trends --rescan` recounts"
        )
