"""Totals of the archive index, kept current by SQLite triggers as records come and go.

A report over every run should not re-read every run. Each :class:`Rollup` names a grouping
(per operation, per operation and model, ...) and a set of *additive* measures: per-row SQL
expressions whose sum is the figure (a count is the sum of ``x IS NOT NULL``). One definition
serves twice:

* the index creates a table for it, with triggers that add a row's measures when the row is
  inserted into the index and subtract them before it is deleted, in the same transaction
  (:attr:`Rollup.schema`); a group whose rows are all gone is dropped. A bulk load drops the
  triggers and adds each batch of rows in one statement instead, with the same upsert
  (:attr:`Rollup.add_appended`); :attr:`Rollup.rebuild` recomputes a table from all rows;
* :meth:`Rollup.scan_sql` computes the same sums over any selection of records, for reports
  that filter by time, where a maintained total cannot help.

A bulk load does without both: the worker processes that parse its records also sum them, in
Python (:meth:`Rollup.partial`, by each key's and measure's ``of``, the twin of its SQL), and
the writer adds each chunk's few group sums (:attr:`Rollup.merge`): about 10 us a record less
on the writer, which is what a first build waits on.

``tests/index/test_rollups.py`` proves the three equal after random additions, replacements and
removals. Only sums can be maintained like this; minima, maxima, distinct counts and quantiles
come from ordered indexes instead (see :mod:`exporter.index.figures`).

Measures read the record's row in ``files`` as ``f`` and the source row as ``{r}`` (``f``
itself for rollups over ``files``). The index only ever inserts and deletes rows, never
updates them, which is what the triggers rely on: an update of a source row is refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache, partial
from typing import Any, Final, cast

from exporter.index.stats import SQL_RUN_TOTAL, run_total
from exporter.index.summary import ModelTokens, Projection, RecordSummary, StageSummary

__all__ = [
    "ERROR_TOTALS",
    "MODEL_TOTALS",
    "OPERATION_TOTALS",
    "ROLLUPS",
    "STAGE_TOTALS",
    "Key",
    "Measure",
    "Rollup",
    "partials",
]

_VALID: Final = "f.invalid_reason IS NULL"
# SQLite's integers; compared, not tested with ``in range(...)``, which scans a float
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Key:
    """A grouping column: its name and the SQL that computes it."""

    name: str
    expr: str
    py: str  # the same as a Python expression of the source row ``r`` and its record ``f``
    nullable: bool = False  # NULL forms a group of its own (SQL's GROUP BY does the same)


@dataclass(frozen=True, slots=True)
class Measure:
    """An additive figure: the sum over rows of ``expr``, which must never be NULL."""

    name: str
    expr: str
    py: str  # the same in Python, as Key.py (never None)
    real: bool = False  # stored as REAL; otherwise an exact INTEGER


@dataclass(frozen=True, slots=True)
class Rollup:
    """Sums of ``measures`` per ``keys`` over the rows of ``source`` that meet ``condition``.

    Every rollup also counts its rows, as the measure ``rows``.
    """

    table: str
    source: str  # "files" or a child table of the index (with a file_id column)
    alias: str  # the source's alias in scan_sql
    keys: tuple[Key, ...]
    measures: tuple[Measure, ...]
    rows_py: str  # a record ``f``'s source rows, in Python ("(f,)" for files)
    condition: str = "TRUE"
    condition_py: str = "True"  # the same in Python

    @property
    def columns(self) -> tuple[str, ...]:
        """The column names of a row of :meth:`scan_sql`, in order (:meth:`read_sql` adds the
        ``overflowed`` flag after them)."""
        return (*(k.name for k in self.keys), "rows", *(m.name for m in self.measures))

    def measure(self, name: str) -> Measure:
        """The measure called ``name`` (KeyError if there is none)."""
        for m in self._measures():
            if m.name == name:
                return m
        raise KeyError(name)

    def _measures(self) -> tuple[Measure, ...]:
        return (Measure("rows", "1", "1"), *self.measures)

    def _from(self, row: str, *, appended: bool = False) -> str:
        """FROM and WHERE of the rows to add: the source rows aliased ``row`` (``NEW`` or
        ``OLD`` in a trigger: only that row; with ``appended``, those whose rowid is above
        ``?``) that count, each with its record as ``f``."""
        if row in ("NEW", "OLD"):
            link = "id" if self.source == "files" else "file_id"
            rows = f"FROM files f WHERE f.id = {row}.{link}"
        elif self.source == "files":
            rows = f"FROM files {row} WHERE TRUE"
        else:
            rows = f"FROM {self.source} {row} JOIN files f ON f.id = {row}.file_id WHERE TRUE"
        if appended:
            rows += f" AND {row}.rowid > ?"
        return f"{rows} AND {_VALID} AND ({self.condition.format(r=row)})"

    @property
    def _unique_key(self) -> str:
        """The table's unique key; a NULL key becomes '' in it, as NULLs are never equal."""
        return ", ".join(f"ifnull({k.name}, '')" if k.nullable else k.name for k in self.keys)

    def _update(self) -> str:
        """The upsert's SET clause: add a row's measures to its group's running totals.

        Sums of REAL measures are compensated (Neumaier): the rounding error of each addition
        is kept in ``<name>_c``, so adding a large value and later subtracting it leaves the
        small ones beside it intact. An integer sum that leaves 64 bits turns into a REAL in
        SQLite, losing counts; ``overflowed`` records that it happened, for good (until a
        rebuild), since a later subtraction may bring the sum back into range, but not its
        lost digits. (All right-hand sides read the row as it was before this update.)
        """
        parts: list[str] = []
        for m in self._measures():
            new = f"excluded.{m.name}"
            parts.append(f"{m.name} = {m.name} + {new}")
            if m.real:
                total = f"({m.name} + {new})"
                # plus the compensation the added row brings, if any (a merged partial sum's)
                parts.append(
                    f"{m.name}_c = {m.name}_c + excluded.{m.name}_c + CASE WHEN abs({m.name}) "
                    f">= abs({new}) THEN ({m.name} - {total}) + {new} "
                    f"ELSE ({new} - {total}) + {m.name} END"
                )
        widened = " OR ".join(
            f"typeof({m.name} + excluded.{m.name}) = 'real'" for m in self._measures() if not m.real
        )
        parts.append(f"overflowed = overflowed OR {widened}")
        return ", ".join(parts)

    def _upsert(self, row: str, sign: str, *, appended: bool = False) -> str:
        """Add (``+``) or subtract (``-``) the measures of the rows :meth:`_from` selects,
        one row at a time, to their groups: the triggers' statement, and the rebuild's."""
        keys = ", ".join(k.expr.format(r=row) for k in self.keys)
        sums = ", ".join(f"{sign}({m.expr.format(r=row)})" for m in self._measures())
        return (
            f"INSERT INTO {self.table} ({', '.join(self.columns)}) "
            f"SELECT {keys}, {sums} {self._from(row, appended=appended)} "
            f"ON CONFLICT ({self._unique_key}) DO UPDATE SET {self._update()}"
        )

    def _triggers(self) -> dict[str, str]:
        return {
            f"{self.table}_add": f"AFTER INSERT ON {self.source} BEGIN "
            f"{self._upsert('NEW', '+')}; END",
            f"{self.table}_remove": f"BEFORE DELETE ON {self.source} BEGIN "
            f"{self._upsert('OLD', '-')}; DELETE FROM {self.table} WHERE rows = 0; END",
        }

    @property
    def schema(self) -> list[str]:
        """Statements creating the table, its unique key and the triggers that keep it current."""
        key_columns = [f"{k.name}{'' if k.nullable else ' NOT NULL'}" for k in self.keys]
        measure_columns = [
            f"{m.name} {'REAL' if m.real else 'INTEGER'} NOT NULL" for m in self._measures()
        ]
        compensations = [f"{m.name}_c REAL NOT NULL DEFAULT 0" for m in self.measures if m.real]
        flag = "overflowed INTEGER NOT NULL DEFAULT 0"
        return [
            f"CREATE TABLE IF NOT EXISTS {self.table} "
            f"({', '.join([*key_columns, *measure_columns, *compensations, flag])})",
            f"CREATE UNIQUE INDEX IF NOT EXISTS {self.table}_key "
            f"ON {self.table} ({self._unique_key})",
            *(
                f"CREATE TRIGGER IF NOT EXISTS {name} {body}"
                for name, body in self._triggers().items()
            ),
            f"CREATE TRIGGER IF NOT EXISTS {self.source}_not_updated BEFORE UPDATE ON "
            f"{self.source} BEGIN SELECT RAISE(ABORT, 'index rows are replaced, not updated'); "
            "END",
        ]

    @property
    def drop_triggers(self) -> list[str]:
        """Statements that stop the upkeep, for a bulk load followed by :meth:`rebuild`."""
        return [f"DROP TRIGGER IF EXISTS {name}" for name in self._triggers()]

    @property
    def rebuild(self) -> list[str]:
        """Statements recomputing the table from its source rows by the triggers' own
        upsert, row by row in one statement: the same compensated sums, and the same
        ``overflowed`` flag on exactly the groups whose integer sums leave 64 bits."""
        return [f"DELETE FROM {self.table}", self._upsert(self.alias, "+")]

    @property
    def add_appended(self) -> str:
        """The rebuild's upsert over the source rows whose rowid is above ``?``: how a bulk
        load adds each batch it appends (no row is deleted meanwhile, and SQLite gives an
        appended row a rowid above every existing one)."""
        return self._upsert(self.alias, "+", appended=True)

    def partial(self, projections: Iterable[Projection]) -> list[tuple[Any, ...]]:
        """The sums of valid records, as :func:`~exporter.index.summary.project` gives them,
        per group, in Python, as :attr:`merge` adds them: keys, ``rows`` and the measures,
        then the compensation of each REAL measure (floats are summed exactly rounded,
        :func:`_split`, so that the sum and its compensation hold what a row-by-row
        compensated sum holds).

        OverflowError if an integer sum leaves 64 bits: the caller adds the rows by SQL
        instead, which flags the group as the triggers do.
        """
        return _compiled(self)(projections)

    def partial_source(self) -> str:
        """The Python of :meth:`partial`: one loop over the rows with every expression inline,
        as a hundred thousand records need (a function call per measure and row costs several
        times more), reading the projections' tuples by position (:func:`_positional`)."""
        measures = self._measures()
        py = partial(_positional, row=self.source)
        keys = ", ".join(py(k.py) for k in self.keys)
        fresh = ", ".join("[]" if m.real else "0" for m in measures)
        adds = "\n".join(
            f"            a[{i}].append({py(m.py)})"
            if m.real
            else f"            a[{i}] += {py(m.py)}"
            for i, m in enumerate(measures)
        )
        reals = [i for i, m in enumerate(measures) if m.real]
        sums = ", ".join(f"a[{i}][0]" if m.real else f"a[{i}]" for i, m in enumerate(measures))
        compensations = "".join(f", a[{i}][1]" for i in reals)
        split = "".join(f"\n        a[{i}] = split(a[{i}])" for i in reals)
        integers = ", ".join(str(i) for i, m in enumerate(measures) if not m.real)
        skip = (
            ""
            if self.condition_py == "True"
            else f"""
            if not ({py(self.condition_py)}):
                continue"""
        )
        return f"""\
def partial(projections):
    groups = {{}}
    for p in projections:
        f = p[0]
        for r in {py(self.rows_py)}:{skip}
            key = ({keys},)
            a = groups.get(key)
            if a is None:
                a = groups[key] = [{fresh}]
{adds}
    out = []
    for key, a in groups.items():
        for i in ({integers},):
            if not INT64_MIN <= a[i] <= INT64_MAX:
                raise OverflowError("{self.table}: a sum leaves 64 bits"){split}
        out.append((*key, {sums}{compensations}))
    return out
"""

    @property
    def merge(self) -> str:
        """The upsert adding a row of :meth:`partial` to its group's totals: the triggers'
        update, from values (compensated, and flagging a sum that leaves 64 bits)."""
        columns = [*self.columns, *(f"{m.name}_c" for m in self.measures if m.real)]
        marks = ", ".join("?" * len(columns))
        return (
            f"INSERT INTO {self.table} ({', '.join(columns)}) VALUES ({marks}) "
            f"ON CONFLICT ({self._unique_key}) DO UPDATE SET {self._update()}"
        )

    @staticmethod
    def overflowed(row: Sequence[Any]) -> bool:
        """Whether a row of :meth:`read_sql` has an integer sum that left 64 bits."""
        return bool(row[-1])

    def read_sql(self, *, operation: bool = False) -> str:
        """The maintained totals, named by :attr:`columns`, then the ``overflowed`` flag;
        with ``operation``, of the operation bound to ``?``."""
        sums = [f"{m.name} + {m.name}_c" if m.real else m.name for m in self._measures()]
        keys = [k.name for k in self.keys]
        where = " WHERE operation = ?" if operation else ""
        return f"SELECT {', '.join([*keys, *sums, 'overflowed'])} FROM {self.table}{where}"

    def scan_sql(self, extra: Iterable[str] = ()) -> str:
        """The same totals computed over the records ``{where}`` selects (an index query).

        ``extra`` aggregates of each group are appended to its row.
        """
        keys = [k.expr.format(r=self.alias) for k in self.keys]
        sums = [f"SUM({m.expr.format(r=self.alias)})" for m in self._measures()]
        join = "" if self.source == "files" else f" JOIN files f ON f.id = {self.alias}.file_id"
        return (
            f"SELECT {', '.join([*keys, *sums, *extra])} "
            f"FROM {self.source} {self.alias}{join} "
            f"WHERE {{where}} AND ({self.condition.format(r=self.alias)}) "
            f"GROUP BY {', '.join(keys)}"
        )


# A record's position in a projection (summary.project), by the summary's field names: its
# scalars are ``f``, its child rows ``p[1]`` (models) to ``p[3]`` (error types).
_SCALARS: Final = RecordSummary._fields[1:-3]
_RECORD: Final = {
    **{name: f"f[{i}]" for i, name in enumerate(_SCALARS)},
    "models": "p[1]",
    "stage_durations": "p[2]",
    "error_types": "p[3]",
}
_ROW: Final = {
    "files": {name: f"r[{i}]" for i, name in enumerate(_SCALARS)},
    "models": {name: f"r[{i}]" for i, name in enumerate(ModelTokens._fields)},
    "stages": {name: f"r[{i}]" for i, name in enumerate(StageSummary._fields)},
    "errors": {},  # an error type is a string
}
_ATTRIBUTE: Final = re.compile(r"\b([fr])\.(\w+)")


def _positional(py: str, row: str) -> str:
    """``py``, written over a summary (``f.duration_seconds``) and its rows (``r.model``), as
    it reads a projection of source ``row``: ``f[2]``, ``r[0]`` (KeyError for a name that is
    not a field)."""
    return _ATTRIBUTE.sub(lambda m: (_RECORD if m[1] == "f" else _ROW[row])[m[2]], py)


def _split(values: list[float]) -> tuple[float, float]:
    """The exactly rounded sum of ``values`` and what rounding it left out (itself rounded):
    a small value beside a large one survives the large one's later removal."""
    total = math.fsum(values)
    values.append(-total)
    return total, math.fsum(values)


# What the measures' Python may call, besides builtins.
_PYTHON: Final = {
    "split": _split,
    "run_total": run_total,
    "INT64_MIN": _INT64_MIN,
    "INT64_MAX": _INT64_MAX,
}


@cache
def _compiled(rollup: Rollup) -> Callable[[Iterable[Projection]], list[tuple[Any, ...]]]:
    namespace = dict(_PYTHON)
    code = compile(rollup.partial_source(), f"<rollup {rollup.table}>", "exec")
    exec(code, namespace)  # noqa: S102 (made of this module's constants)
    return cast(Callable[[Iterable[Projection]], list[tuple[Any, ...]]], namespace["partial"])


# Each measure's Python follows its SQL; a files rollup's source row ``r`` is the record ``f``.
_TOKENS_SEEN: Final = "COALESCE(f.total_tokens, f.input_tokens, f.output_tokens)"
_TOKENS_SEEN_PY: Final = (
    "(f.total_tokens if f.total_tokens is not None else "
    "f.input_tokens if f.input_tokens is not None else f.output_tokens)"
)
_ITEM_SECONDS_PY: Final = (
    "(f.parallel_efficiency * f.duration_seconds if f.parallel_efficiency is not None "
    "and f.duration_seconds is not None else None)"
)
_OPERATION: Final = Key("operation", "f.operation", "f.operation")

OPERATION_TOTALS: Final = Rollup(
    table="operation_totals",
    source="files",
    alias="f",
    keys=(_OPERATION,),
    measures=(
        Measure("durations", "f.duration_seconds IS NOT NULL", "f.duration_seconds is not None"),
        Measure(
            "duration_seconds",
            "COALESCE(f.duration_seconds, 0)",
            "f.duration_seconds or 0.0",
            real=True,
        ),
        Measure(
            "items",
            SQL_RUN_TOTAL,
            "run_total(f.total_items, f.success_count, f.failure_count, f.partial_count)",
        ),
        Measure("success", "COALESCE(f.success_count, 0)", "f.success_count or 0"),
        Measure("failure", "COALESCE(f.failure_count, 0)", "f.failure_count or 0"),
        Measure("partial", "COALESCE(f.partial_count, 0)", "f.partial_count or 0"),
        Measure(
            "runs_with_tokens", f"{_TOKENS_SEEN} IS NOT NULL", f"{_TOKENS_SEEN_PY} is not None"
        ),
        Measure("input_tokens", "COALESCE(f.input_tokens, 0)", "f.input_tokens or 0"),
        Measure("output_tokens", "COALESCE(f.output_tokens, 0)", "f.output_tokens or 0"),
        Measure(
            "total_tokens",
            "COALESCE(f.total_tokens, COALESCE(f.input_tokens, 0) + COALESCE(f.output_tokens, 0))",
            "f.total_tokens if f.total_tokens is not None "
            "else (f.input_tokens or 0) + (f.output_tokens or 0)",
        ),
        Measure("runs_priced", "f.estimated_cost IS NOT NULL", "f.estimated_cost is not None"),
        Measure("cost_usd", "COALESCE(f.estimated_cost, 0)", "f.estimated_cost or 0.0", real=True),
        Measure(
            "runs_unpriced",
            f"f.estimated_cost IS NULL AND COALESCE({_TOKENS_SEEN}, 0) > 0",
            f"f.estimated_cost is None and ({_TOKENS_SEEN_PY} or 0) > 0",
        ),
        Measure(
            "runs_with_efficiency",
            "f.parallel_efficiency IS NOT NULL",
            "f.parallel_efficiency is not None",
        ),
        Measure(
            "efficiency_sum",
            "COALESCE(f.parallel_efficiency, 0)",
            "f.parallel_efficiency or 0.0",
            real=True,
        ),
        # item seconds minus wall seconds, over the runs that recorded both
        Measure(
            "seconds_saved",
            "COALESCE((f.parallel_efficiency - 1) * f.duration_seconds, 0)",
            "(f.parallel_efficiency - 1) * f.duration_seconds "
            "if f.parallel_efficiency is not None and f.duration_seconds is not None else 0.0",
            real=True,
        ),
        Measure(
            "runs_with_item_time",
            "f.parallel_efficiency IS NOT NULL AND f.duration_seconds IS NOT NULL",
            f"{_ITEM_SECONDS_PY} is not None",
        ),
        Measure(
            "item_seconds",
            "COALESCE(f.parallel_efficiency * f.duration_seconds, 0)",
            f"{_ITEM_SECONDS_PY} or 0.0",
            real=True,
        ),
    ),
    rows_py="(f,)",
)

MODEL_TOTALS: Final = Rollup(
    table="model_totals",
    source="models",
    alias="m",
    keys=(_OPERATION, Key("model", "{r}.model", "r.model")),
    measures=(
        Measure("input_tokens", "{r}.input_tokens", "r.input_tokens"),
        Measure("output_tokens", "{r}.output_tokens", "r.output_tokens"),
        Measure("cache_read_tokens", "{r}.cache_read_tokens", "r.cache_read_tokens"),
        Measure("runs_priced", "{r}.cost_usd IS NOT NULL", "r.cost_usd is not None"),
        Measure("cost_usd", "COALESCE({r}.cost_usd, 0)", "r.cost_usd or 0.0", real=True),
        Measure("runs_unpriced", "{r}.cost_usd IS NULL", "r.cost_usd is None"),
    ),
    rows_py="f.models",
)

# Stage time per operation and stage, over the stages that recorded a duration.
STAGE_TOTALS: Final = Rollup(
    table="stage_totals",
    source="stages",
    alias="s",
    keys=(_OPERATION, Key("stage", "{r}.stage", "r.stage", nullable=True)),
    measures=(
        Measure("duration_seconds", "{r}.duration_seconds", "r.duration_seconds", real=True),
    ),
    rows_py="f.stage_durations",
    condition="{r}.duration_seconds IS NOT NULL",
    condition_py="r.duration_seconds is not None",
)

ERROR_TOTALS: Final = Rollup(
    table="error_totals",
    source="errors",
    alias="e",
    keys=(_OPERATION, Key("error_type", "{r}.error_type", "r")),
    measures=(),
    rows_py="f.error_types",
)

ROLLUPS: Final = (OPERATION_TOTALS, MODEL_TOTALS, STAGE_TOTALS, ERROR_TOTALS)


def partials(projections: Sequence[Projection]) -> tuple[list[tuple[Any, ...]], ...]:
    """:meth:`Rollup.partial` of ``projections`` for each of :data:`ROLLUPS`, in order."""
    return tuple(rollup.partial(projections) for rollup in ROLLUPS)
