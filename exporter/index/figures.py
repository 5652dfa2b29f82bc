"""The figures a trend report is computed from, read from the index in one transaction.

Over every record (of one operation), :func:`figures_from_totals` reads the totals the index
keeps (:mod:`exporter.index.rollups`) plus a few lookups in its ordered indexes for extremes and
quantiles: milliseconds at a hundred thousand runs. A selection by time (``--since``,
``--recent``) is aggregated by :func:`figures_from_scan` with the same definitions over the
selected rows. Rows come back as dicts named by column.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from exporter.index.rollups import (
    ERROR_TOTALS,
    MODEL_TOTALS,
    OPERATION_TOTALS,
    STAGE_TOTALS,
    Rollup,
)
from exporter.index.stats import percentile, percentile_at
from exporter.index.store import ArchiveIndex, RecordFilter, Snapshot, SumOverflowError

__all__ = ["Figures", "Row", "figures_from_scan", "figures_from_totals", "read_elsewhere"]

# Per operation, what sums cannot give: computed over a selection, or read for one operation
# from the index's ordered indexes on (operation, ...).
_EXTREMES: Final = {
    "batches": "COUNT(DISTINCT f.batch_id)",
    "first_run": "MIN(f.timestamp)",
    "last_run": "MAX(f.timestamp)",
    "shortest": "MIN(f.duration_seconds)",
    "longest": "MAX(f.duration_seconds)",
}
_ONE_OPERATION: Final = "f.operation = ?1 AND f.invalid_reason IS NULL"
_EXTREMES_OF_ONE_SQL: Final = "SELECT " + ", ".join(  # noqa: S608 (constant SQL)
    f"(SELECT {aggregate} FROM files f WHERE {_ONE_OPERATION})"  # noqa: S608
    for aggregate in _EXTREMES.values()
)
_DURATION_AT_RANK_SQL: Final = (
    f"SELECT f.duration_seconds FROM files f WHERE {_ONE_OPERATION} "  # noqa: S608
    "AND f.duration_seconds IS NOT NULL ORDER BY f.duration_seconds LIMIT 1 OFFSET ?2"
)
_DURATIONS_SQL: Final = (
    "SELECT f.operation, f.duration_seconds FROM files f "
    "WHERE {where} AND f.duration_seconds IS NOT NULL"
)  # sorted in Python: cheaper than SQLite's temporary B-tree for 100k rows


Row = dict[str, Any]
_CHILD_ROLLUPS: Final = (MODEL_TOTALS, STAGE_TOTALS, ERROR_TOTALS)


@dataclass(frozen=True, slots=True)
class Figures:
    """Rows named by column: OPERATION_TOTALS + _EXTREMES + median and p95, and the totals
    of the other rollups. What a trend report is computed from."""

    operations: list[Row]
    models: list[Row]
    stages: list[Row]
    errors: list[Row]


def _named(rollup: Rollup, rows: Iterable[tuple[Any, ...]], extra: Iterable[str] = ()) -> list[Row]:
    columns = (*rollup.columns, *extra)
    return [dict(zip(columns, row, strict=True)) for row in rows]


def _read_totals(snap: Snapshot, rollup: Rollup, operation: str | None) -> list[Row]:
    rows = snap.select(
        rollup.read_sql(operation=operation is not None), (operation,) if operation else ()
    )
    overflowed = [row[0] for row in rows if rollup.overflowed(row)]  # keys start with operation
    if overflowed:
        raise SumOverflowError(overflowed)
    return _named(rollup, (row[:-1] for row in rows))


def figures_from_totals(index: ArchiveIndex, operation: str | None) -> Figures:
    """Every record (of ``operation``): the maintained totals, and a few indexed lookups."""
    with index.snapshot() as snap:
        operations = _read_totals(snap, OPERATION_TOTALS, operation)
        for row in operations:
            op = row["operation"]
            row.update(zip(_EXTREMES, snap.select(_EXTREMES_OF_ONE_SQL, (op,))[0], strict=True))

            def duration_at(rank: int, op: str = op) -> float:
                return float(snap.select(_DURATION_AT_RANK_SQL, (op, rank))[0][0])

            count = row["durations"]
            row["median"] = percentile_at(count, 0.5, duration_at) if count else None
            row["p95"] = percentile_at(count, 0.95, duration_at) if count else None
        return Figures(operations, *(_read_totals(snap, r, operation) for r in _CHILD_ROLLUPS))


def figures_from_scan(index: ArchiveIndex, where: RecordFilter) -> Figures:
    """The records ``where`` selects: the same sums, computed over them, in one transaction
    (so the durations fetched for the quantiles are those the sums counted)."""
    statements = [
        OPERATION_TOTALS.scan_sql(extra=_EXTREMES.values()),
        _DURATIONS_SQL,
        *(r.scan_sql() for r in _CHILD_ROLLUPS),
    ]
    with index.snapshot() as snap:
        op_rows, duration_rows, *child_rows = [snap.select(sql, where=where) for sql in statements]
    by_op: dict[str, list[float]] = defaultdict(list)
    for op, duration in duration_rows:
        by_op[op].append(duration)
    operations = _named(OPERATION_TOTALS, op_rows, _EXTREMES)
    for row in operations:
        durations = sorted(by_op[row["operation"]])
        row["median"] = percentile(durations, 0.5) if durations else None
        row["p95"] = percentile(durations, 0.95) if durations else None
    return Figures(
        operations, *(_named(r, rows) for r, rows in zip(_CHILD_ROLLUPS, child_rows, strict=True))
    )


_READ_ELSEWHERE_SQL: Final = (
    "SELECT f.name, f.read_elsewhere FROM files f "
    "WHERE {where} AND f.read_elsewhere IS NOT NULL ORDER BY f.name"
)


def read_elsewhere(index: ArchiveIndex, where: RecordFilter) -> dict[str, list[str]]:
    """Records ``where`` selects whose figures came partly from outside ``metrics`` (a
    top-level ``token_usage``, a ``status``): file name -> what was read there."""
    rows = index.select(_READ_ELSEWHERE_SQL, where=where)
    return {name: fields.split(",") for name, fields in rows}
