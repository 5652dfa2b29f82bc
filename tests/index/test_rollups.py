"""The totals the index keeps with triggers equal the same sums computed over its rows.

Hypothesis drives an archive through additions, replacements under the same name, invalid
files and removals; after every refresh each rollup table must equal its ``scan_sql`` over all
records (integers exactly, sums of floats to 1e-9), and the trend report read from the totals
must equal the one aggregated over a selection that happens to hold every record.
"""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.index import parsing as index_parsing
from exporter.index import writes as index_writes
from exporter.index.readback import ReadBack
from exporter.index.rollups import ROLLUPS, Rollup
from exporter.index.store import ArchiveIndex, RecordFilter, SumOverflowError
from exporter.index.summary import Projection
from exporter.reports.trends import compute_trends
from exporter.signals.thresholds import load_thresholds
from instrumentation.semconv import OPERATIONS
from tests.support.generated_archive import write_archive

_counts = st.none() | st.integers(0, 12)
# Durations from a microsecond up: a compensated sum keeps one float of what rounding left out,
# so a run of 5e-324 s beside runs of 1 s and 1e-261 s is lost once they are removed (a
# share of 0 instead of 1); no clock measures below a microsecond.
_seconds = st.none() | st.just(0.0) | st.floats(1e-6, 5000, allow_nan=False)


@st.composite
def record_json(draw: st.DrawFn) -> dict[str, Any]:
    """A valid record with every optional figure present or absent."""
    total = draw(_counts)
    left = 36 if total is None else total
    counts: dict[str, int | None] = {}
    for name in ("success_count", "failure_count", "partial_count"):
        value = draw(st.none() | st.integers(0, left))
        counts[name] = value
        left -= value or 0
    models = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "model": st.sampled_from(["opus", "sonnet", "haiku"]),
                    "input_tokens": st.integers(0, 10**6),
                    "output_tokens": st.integers(0, 10**5),
                    "cache_read_tokens": st.integers(0, 10**5),
                    "cost_usd": st.none() | st.floats(0, 50, allow_nan=False),
                }
            ),
            max_size=2,
        )
    )
    usage: dict[str, Any] | None = draw(
        st.none()
        | st.fixed_dictionaries(
            {
                "input_tokens": _counts,
                "output_tokens": _counts,
                "total_tokens": _counts,
                "estimated_cost": st.none() | st.floats(0, 100, allow_nan=False),
            }
        )
    )
    if usage is not None:
        usage["by_model"] = models
    stages = draw(
        st.lists(
            st.fixed_dictionaries(
                {"stage": st.none() | st.integers(-2, 3), "duration_seconds": _seconds}
            ),
            max_size=3,
        )
    )
    errors = draw(st.lists(st.sampled_from(["TimeoutError", "ValueError", None]), max_size=3))
    efficiency = draw(st.none() | st.floats(0, 8, allow_nan=False))
    return {
        "batch_id": str(draw(st.integers(1, 4))),
        "operation": draw(st.sampled_from(OPERATIONS)),
        "timestamp": f"2026-03-{draw(st.integers(1, 28)):02d}T10:00:00+00:00",
        "duration_seconds": draw(_seconds),
        "metrics": {
            "total_items": total,
            **counts,
            "token_usage": usage,
            "stage_durations": stages,
            "errors": [{"error_type": e} for e in errors],
        },
        "optimization_metrics": {"parallel_efficiency": efficiency},
    }


# (slot, content): a record, None to remove the slot's file, or "" for an invalid file
_step = st.tuples(st.integers(0, 5), st.none() | st.just("") | record_json())


def _put(archive: Path, slot: int, content: dict[str, Any] | str | None) -> None:
    path = archive / f"batch-slot{slot}.json"
    if content is None:
        path.unlink(missing_ok=True)
        return
    staged = archive / f".tmp-{slot}"
    staged.write_text(json.dumps(content) if content != "" else "{not json", encoding="utf-8")
    staged.replace(path)  # a new inode under the same name, as our atomic writer does


def _by_key(rollup: Rollup, rows: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    width = len(rollup.keys)
    return {row[:width]: row[width:] for row in rows}


def _assert_same_sums(maintained: tuple[Any, ...], scanned: tuple[Any, ...]) -> None:
    assert len(maintained) == len(scanned)
    for kept, summed in zip(maintained, scanned, strict=True):
        if isinstance(summed, int) and isinstance(kept, int):
            assert kept == summed
        else:
            assert math.isclose(kept, summed, rel_tol=1e-9, abs_tol=1e-6), (kept, summed)


def _assert_totals_match_scans(index: ArchiveIndex) -> None:
    for rollup in ROLLUPS:
        kept = index.select(rollup.read_sql())
        assert not any(rollup.overflowed(row) for row in kept)
        maintained = _by_key(rollup, [row[:-1] for row in kept])
        scanned = _by_key(rollup, index.select(rollup.scan_sql()))
        assert maintained.keys() == scanned.keys(), rollup.table
        for key, sums in scanned.items():
            _assert_same_sums(maintained[key], sums)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(st.lists(_step, min_size=1, max_size=4), min_size=1, max_size=6))
def test_totals_kept_by_triggers_equal_the_sums_over_the_rows(
    tmp_path_factory: pytest.TempPathFactory,
    steps: list[list[tuple[int, dict[str, Any] | str | None]]],
) -> None:
    archive = tmp_path_factory.mktemp("archive")
    with ArchiveIndex(archive, archive.parent / f"{archive.name}.sqlite") as index:
        for changes in steps:
            for slot, content in changes:
                _put(archive, slot, content)
            index.refresh()
            _assert_totals_match_scans(index)
        for slot in range(6):
            _put(archive, slot, None)
        index.refresh()
        for rollup in ROLLUPS:  # nothing left, not groups of zeros or of rounding residue
            assert index.select(rollup.read_sql()) == [], rollup.table


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(records=st.lists(record_json(), max_size=8))
def test_the_sums_a_bulk_load_makes_in_python_equal_the_sql_over_the_rows(
    tmp_path_factory: pytest.TempPathFactory, records: list[dict[str, Any]]
) -> None:
    # The keys', measures' and conditions' Python twins against their SQL, on the same rows:
    # integers exactly, a float sum plus its compensation to 1e-9.
    archive = tmp_path_factory.mktemp("archive")
    for slot, record in enumerate(records):
        _put(archive, slot, record)
    with ArchiveIndex(archive, archive.parent / f"{archive.name}.sqlite") as index:
        index.refresh()
        projections: list[Projection] = [
            (s[1:-3], [*s.models], [*s.stage_durations], [*s.error_types])
            for s in index.summaries()
        ]
        for rollup in ROLLUPS:
            reals = sum(m.real for m in rollup.measures)
            made = []
            for row in rollup.partial(projections):
                sums, compensations = row[: len(row) - reals], row[len(row) - reals :]
                compensation = iter(compensations)
                width = len(rollup.keys) + 1  # the keys and the row count
                made.append(
                    (
                        *sums[:width],
                        *(
                            value + next(compensation) if m.real else value
                            for m, value in zip(rollup.measures, sums[width:], strict=True)
                        ),
                    )
                )
            python = _by_key(rollup, made)
            scanned = _by_key(rollup, index.select(rollup.scan_sql()))
            assert python.keys() == scanned.keys(), rollup.table
            for key, sums in scanned.items():
                _assert_same_sums(python[key], sums)


def _comparable(report: Any) -> dict[str, Any]:
    data: dict[str, Any] = report.model_dump(mode="json", exclude={"generated_at", "selection"})
    return data


def _assert_close(
    totals: Any, scanned: Any, where: str = "report", *, rel: float = 1e-12, abs_: float = 0.0
) -> None:
    if isinstance(scanned, dict):
        assert totals.keys() == scanned.keys(), where
        for key in scanned:
            _assert_close(totals[key], scanned[key], f"{where}.{key}", rel=rel, abs_=abs_)
    elif isinstance(scanned, list):
        assert len(totals) == len(scanned), where
        for n, (a, b) in enumerate(zip(totals, scanned, strict=True)):
            _assert_close(a, b, f"{where}[{n}]", rel=rel, abs_=abs_)
    elif isinstance(scanned, float) and not isinstance(totals, str):
        assert math.isclose(totals, scanned, rel_tol=rel, abs_tol=abs_), (where, totals, scanned)
    else:
        assert totals == scanned, where


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    records=st.lists(record_json(), max_size=8),
    removed=st.sets(st.integers(0, 7)),
    operation=st.sampled_from([None, "execute", "generate"]),
)
def test_reports_from_totals_equal_reports_over_the_rows_after_any_removals(
    tmp_path_factory: pytest.TempPathFactory,
    records: list[dict[str, Any]],
    removed: set[int],
    operation: str | None,
) -> None:
    # Extremes, quantiles and distinct batches come from indexes, the rest from the totals:
    # together they must give the report a scan of the same rows gives (the scan's plain SQL
    # sums carry their own rounding, hence the float tolerance).
    archive = tmp_path_factory.mktemp("archive")
    for slot, record in enumerate(records):
        _put(archive, slot, record)
    thresholds = load_thresholds()
    with ArchiveIndex(archive, archive.parent / f"{archive.name}.sqlite") as index:
        index.refresh()
        for slot in removed:
            _put(archive, slot, None)
        index.refresh()
        from_totals = compute_trends(index, thresholds, RecordFilter(operation=operation))
        scanned = compute_trends(index, thresholds, RecordFilter(operation=operation, since=0))
    _assert_close(_comparable(from_totals), _comparable(scanned), rel=1e-9, abs_=1e-6)


@pytest.mark.parametrize("operation", [None, "execute"])
def test_the_report_from_totals_equals_the_report_aggregated_over_every_record(
    tmp_path: Path, operation: str | None
) -> None:
    archive = tmp_path / "archive"
    write_archive(archive, 400, seed=11, every_nth_without=7)
    (archive / "batch-broken.json").write_text("{", encoding="utf-8")
    with ArchiveIndex(archive, tmp_path / "ix.sqlite") as index:
        index.refresh()
        (archive / "batch-0-generate.json").unlink()  # a removal, too
        index.refresh(full=True)
        thresholds = load_thresholds()
        from_totals = compute_trends(index, thresholds, RecordFilter(operation=operation))
        # the same records, selected by time: computed over the rows instead
        everything = RecordFilter(operation=operation, since=0.0)
        scanned = compute_trends(index, thresholds, everything)
    assert from_totals.records == scanned.records == (399 if operation is None else 100)
    _assert_close(_comparable(from_totals), _comparable(scanned))


@pytest.fixture
def rebuilds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per recomputation of the rollups from the rows."""
    counted: list[int] = []
    rebuild = index_writes.rebuild_rollups

    def counting(db: Any) -> None:
        counted.append(1)
        rebuild(db)

    monkeypatch.setattr(index_writes, "rebuild_rollups", counting)
    return counted


def test_a_bulk_refresh_adds_the_totals_batch_by_batch_and_triggers_keep_them_after(
    tmp_path: Path, rebuilds: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "archive"
    write_archive(archive, 1200, seed=5, every_nth_without=9)
    monkeypatch.setattr(index_parsing, "PARALLEL_FROM", 100)  # parsed in worker batches
    monkeypatch.setattr(index_parsing, "usable_cores", lambda: 2)  # even on a 1-core host
    batches: list[int] = []
    insert = index_writes.insert_rows

    def counting(db: Any, rows: index_writes.Rows) -> None:
        batches.append(len(rows.files))
        insert(db, rows)

    monkeypatch.setattr(index_writes, "insert_rows", counting)
    with ArchiveIndex(archive, tmp_path / "ix.sqlite") as index:
        index.refresh()  # 1200 new records: added per batch, no row-by-row upkeep, no rebuild
        assert len(batches) > 1
        assert sum(batches) == 1200
        assert rebuilds == []
        triggers = {
            n for (n,) in index.select("SELECT name FROM sqlite_master WHERE type='trigger'")
        }
        upkeep = {f"{r.table}_{what}" for r in ROLLUPS for what in ("add", "remove")}
        assert upkeep <= triggers  # put back after the bulk load
        _assert_totals_match_scans(index)

        names = sorted(p.name for p in archive.iterdir())
        for name in names[:3]:
            (archive / name).unlink()
        _put(archive, 0, json.loads((archive / names[3]).read_text(encoding="utf-8")))
        (archive / names[4]).write_text("[]", encoding="utf-8")  # now invalid
        index.refresh(full=True)  # a few changes: kept by the triggers
        assert rebuilds == []
        _assert_totals_match_scans(index)
        assert len(index) == 1200 - 3 - 1 + 1


def test_a_bulk_change_of_an_indexed_archive_keeps_the_totals(
    tmp_path: Path, rebuilds: list[int]
) -> None:
    # Most records rewritten and some removed at once: the removals go through the triggers,
    # the new rows are added batch by batch; the totals must be those of the rows left.
    archive = tmp_path / "archive"
    write_archive(archive, 1200, seed=6, every_nth_without=7)
    with ArchiveIndex(archive, tmp_path / "ix.sqlite") as index:
        index.refresh()
        names = sorted(p.name for p in archive.iterdir())
        for name in names[:60]:
            (archive / name).unlink()
        for n, name in enumerate(names[60:1160]):
            record = json.loads((archive / name).read_text(encoding="utf-8"))
            record["duration_seconds"] = 1000.0 + n / 7
            _put(archive, n, record)  # under another name: the old one goes
            (archive / name).unlink()
        result = index.refresh(full=True)
        assert isinstance(result.added, ReadBack)  # went the bulk way
        assert len(result.added) == 1100
        assert rebuilds == []
        _assert_totals_match_scans(index)
        assert len(index) == 1200 - 60


def test_an_update_of_an_indexed_row_is_refused(tmp_path: Path) -> None:
    # The triggers add on insert and subtract on delete; an update would slip past them.
    archive = tmp_path / "archive"
    write_archive(archive, 3)
    with ArchiveIndex(archive, tmp_path / "ix.sqlite") as index:
        index.refresh()
    db = sqlite3.connect(tmp_path / "ix.sqlite")
    try:
        with pytest.raises(sqlite3.IntegrityError, match="replaced, not updated"):
            db.execute("UPDATE files SET duration_seconds = 1")
    finally:
        db.close()


@pytest.mark.parametrize(
    ("waves", "chunked"),
    [((1100,), False), ((1100,), True), ((200, 900), False)],
    ids=["bulk", "bulk-in-chunks", "row-by-row"],
)
def test_an_overflowed_total_is_refused_until_a_full_rescan_recounts(
    tmp_path: Path, waves: tuple[int, ...], chunked: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 1100 runs of 2**53 tokens pass 2**63. Whether a bulk load or the triggers added them,
    # that group's totals are refused (and only that group's); removing runs until the sum
    # fits again does not bring the lost digits back, and only a full rescan recounts. In one
    # chunk the Python sum leaves 64 bits (SQL adds the rows); in chunks each chunk's sum fits
    # and adding them up overflows.
    if chunked:
        monkeypatch.setattr(index_parsing, "PARALLEL_FROM", 100)
        monkeypatch.setattr(index_parsing, "usable_cores", lambda: 2)
    archive = tmp_path / "archive"
    archive.mkdir()

    def put(name: str, operation: str, tokens: int) -> None:
        record = {
            "batch_id": name,
            "operation": operation,
            "timestamp": "2026-03-01T10:00:00+00:00",
            "metrics": {"token_usage": {"input_tokens": tokens}},
        }
        (archive / f"batch-{name}-{operation}.json").write_text(json.dumps(record))

    put("r1", "review", 2**53)
    put("r2", "review", 1)  # 2**53 + 1 has no exact float: a float sum would show 2**53
    thresholds = load_thresholds()
    with ArchiveIndex(archive, tmp_path / "ix.sqlite") as index:
        written = 0
        for wave in waves:
            index.refresh()
            for n in range(written, written + wave):
                put(str(n), "execute", 2**53)
            written += wave
        index.refresh()
        with pytest.raises(SumOverflowError):
            compute_trends(index, thresholds)
        # only execute's group overflowed, in a bulk load as with the triggers
        review = RecordFilter(operation="review")
        tokens = compute_trends(index, thresholds, review).operations["review"].tokens
        assert tokens.input_tokens == 2**53 + 1
        for n in range(100):
            (archive / f"batch-{n}-execute.json").unlink()
        index.refresh()  # 1000 runs left: the true sum fits in 64 bits again
        with pytest.raises(SumOverflowError):
            compute_trends(index, thresholds)
        index.refresh(full=True)
        report = compute_trends(index, thresholds)
    assert report.operations["execute"].tokens.input_tokens == 1000 * 2**53
    assert report.operations["review"].tokens.input_tokens == 2**53 + 1


@pytest.mark.parametrize("others", [0, 1200], ids=["row-by-row", "after-a-bulk-build"])
def test_a_large_value_removed_leaves_the_small_ones_beside_it_exact(
    tmp_path: Path, others: int
) -> None:
    # Kept by adding and subtracting, a plain float sum would lose 3e-5 next to 1e12 and keep
    # 0.0 after the large run is gone; the compensated sum keeps it exactly.
    archive = tmp_path / "archive"
    archive.mkdir()
    big = {"duration_seconds": 1e9, "metrics": {"token_usage": {"estimated_cost": 1e12}}}
    small = {"duration_seconds": 0.3, "metrics": {"token_usage": {"estimated_cost": 3e-5}}}
    for name, figures in (("big", big), ("small", small)):
        record = {
            "batch_id": name,
            "operation": "execute",
            "timestamp": "2026-03-01T10:00:00+00:00",
            **figures,
        }
        (archive / f"batch-{name}-execute.json").write_text(json.dumps(record))
    for n in range(others):  # other operations' runs: enough for the first build to be bulk
        record = {"batch_id": str(n), "operation": "review", "timestamp": "2026-03-01T10:00:00Z"}
        (archive / f"batch-{n}-review.json").write_text(json.dumps({**record, "metrics": {}}))
    thresholds = load_thresholds()
    with ArchiveIndex(archive, tmp_path / "ix.sqlite") as index:
        index.refresh()
        (archive / "batch-big-execute.json").unlink()
        index.refresh()
        trend = compute_trends(index, thresholds).operations["execute"]
    assert trend.cost.cost_usd == 3e-5
    assert trend.durations is not None and trend.durations.mean == 0.3


def test_a_full_rescan_recounts_overflowed_totals_once_per_state_of_the_rows(
    tmp_path: Path, rebuilds: list[int]
) -> None:
    # While the absurd records are still there, recounting again would flag the same groups:
    # serve's periodic full rescans must not pay for it every time.
    archive = tmp_path / "archive"
    archive.mkdir()
    for n in range(1030):
        record = {
            "batch_id": str(n),
            "operation": "execute",
            "timestamp": "2026-03-01T10:00:00Z",
            "metrics": {"token_usage": {"input_tokens": 2**53}},
        }
        (archive / f"batch-{n}-execute.json").write_text(json.dumps(record))
    with ArchiveIndex(archive, tmp_path / "ix.sqlite") as index:
        index.refresh()  # a bulk build: added batch by batch, the group flagged
        assert rebuilds == []
        index.refresh(full=True)  # flagged: recount once
        index.refresh(full=True)  # nothing changed since: no recount
        assert len(rebuilds) == 1
        (archive / "batch-0-execute.json").unlink()
        index.refresh(full=True)  # the rows changed: recount again
        assert len(rebuilds) == 2
