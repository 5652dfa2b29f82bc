"""``backfill``: samples where records end (not a grid), accepted by the real promtool.

That PromQL over the loaded history equals ``trends`` is shown against a real Prometheus in
test_integration.py and test_history.py.
"""

from __future__ import annotations

import io
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from exporter.archive.files import write_record
from exporter.cli.main import main
from exporter.index.store import ArchiveIndex
from exporter.index.summary import summarize
from exporter.prometheus.backfill import escape_label_value, write_openmetrics
from tests.support.records import rec
from tests.support.servers import require_binary

T = datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp()  # 09:00:00
FIRST_END = int(T) + 40  # 09:00:40
SECOND_END = int(T) + 160  # 09:02:40


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    path = tmp_path / "archive"
    for batch, duration, start in (
        ("1", 30.0, datetime(2026, 3, 2, 9, 0, 10, tzinfo=UTC)),
        ("2", 100.0, datetime(2026, 3, 2, 9, 1, tzinfo=UTC)),
    ):
        done = rec(batch, duration=duration, start=start, status="completed", success=5, failure=0)
        write_record(path, done)
    return path


def backfill_text(archive: Path, tmp_path: Path, **labels: str) -> str:
    with ArchiveIndex(archive, db_path=tmp_path / "index.db") as index:
        index.refresh()
        out = io.StringIO()
        write_openmetrics(index.summaries(), out, labels=labels)
    return out.getvalue()


def series(text: str, prefix: str) -> list[tuple[str, str]]:
    """(value, timestamp) of every sample of the line named exactly ``prefix``."""
    return [
        tuple(line[len(prefix) :].split())  # type: ignore[misc]
        for line in text.splitlines()
        if line.startswith(prefix)
    ]


def at(seconds: int, ms: int = 0) -> str:
    return f"{seconds - (ms > 0)}.{(1000 - ms) % 1000:03d}" if ms else f"{seconds}.000"


def test_a_counter_is_sampled_where_records_end_and_just_before(
    archive: Path, tmp_path: Path
) -> None:
    text = backfill_text(archive, tmp_path)
    runs = 'batch_operations_total{operation="execute",outcome="success"} '
    assert series(text, runs) == [
        ("0.0", at(FIRST_END, 1)),  # 0 until the first record ends: increase() sees it
        ("1.0", at(FIRST_END)),
        ("1.0", at(SECOND_END, 1)),
        ("2.0", at(SECOND_END)),
    ]
    seconds = 'batch_operation_duration_seconds_sum{operation="execute",outcome="success"} '
    assert [v for v, _ in series(text, seconds)] == ["0.0", "30.0", "30.0", "130.0"]
    gauge = 'batch_last_completion_timestamp_seconds{operation="execute",outcome="success"} '
    assert series(text, gauge) == [
        (f"{FIRST_END}.0", at(FIRST_END)),
        (f"{SECOND_END}.0", at(SECOND_END)),
    ]


def test_size_grows_with_records_not_with_the_span(tmp_path: Path) -> None:
    def text_for(spacing: timedelta) -> str:
        records = [
            rec(str(n), start=datetime(2024, 1, 1, tzinfo=UTC) + n * spacing) for n in range(3)
        ]
        out = io.StringIO()
        write_openmetrics([summarize(r, f"batch-{n}.json") for n, r in enumerate(records)], out)
        return out.getvalue()

    close, far = text_for(timedelta(minutes=1)), text_for(timedelta(days=365))
    assert len(close.splitlines()) == len(far.splitlines()) < 150


def test_the_series_of_an_operations_ratios_share_their_timestamps(tmp_path: Path) -> None:
    ok = rec("1", start=datetime(2026, 1, 1, tzinfo=UTC), status="completed", success=5, failure=0)
    bad = rec("2", start=datetime(2026, 1, 2, tzinfo=UTC), status="failed", success=0, failure=5)
    other = rec("3", "review", start=datetime(2026, 1, 3, tzinfo=UTC))
    out = io.StringIO()
    write_openmetrics([summarize(r, f"b{n}.json") for n, r in enumerate((ok, bad, other))], out)
    text = out.getvalue()
    stamps = {
        name: [t for _, t in series(text, name)]
        for name in (
            'batch_operation_duration_seconds_count{operation="execute",outcome="success"} ',
            'batch_operation_duration_seconds_sum{operation="execute",outcome="failure"} ',
            'batch_items_total{operation="execute",outcome="success"} ',
            'batch_items_total{operation="execute",outcome="failure"} ',
            'batch_operations_total{operation="execute",outcome="failure"} ',
        )
    }
    # every execute ratio series starts at 0 before the first execute run, and is sampled at
    # (and just before) both execute runs, not at the review run
    assert len({tuple(s) for s in stamps.values()}) == 1
    assert len(next(iter(stamps.values()))) == 4
    failures = 'batch_items_total{operation="execute",outcome="failure"} '
    assert [v for v, _ in series(text, failures)] == ["0.0", "0.0", "0.0", "5.0"]


def test_a_new_histogram_shows_every_bucket_from_zero(archive: Path, tmp_path: Path) -> None:
    text = backfill_text(archive, tmp_path)
    bucket = 'batch_operation_duration_seconds_bucket{operation="execute",outcome="success",le='
    assert series(text, bucket + '"15.0"} ') == [("0.0", at(FIRST_END, 1)), ("0.0", at(FIRST_END))]
    assert [v for v, _ in series(text, bucket + '"30.0"} ')] == ["0.0", "1.0"]  # le inclusive
    assert [v for v, _ in series(text, bucket + '"120.0"} ')] == ["0.0", "1.0", "1.0", "2.0"]
    assert [v for v, _ in series(text, bucket + '"+Inf"} ')] == ["0.0", "1.0", "1.0", "2.0"]


def test_structure_labels_families_eof(archive: Path, tmp_path: Path) -> None:
    text = backfill_text(archive, tmp_path, job="history")
    lines = text.splitlines()
    assert lines[0] == "# TYPE batch_operation_duration_seconds histogram"
    assert "# TYPE batch_operations counter" in lines
    assert text.endswith("\n# EOF\n")
    assert text.count("# EOF") == 1
    samples = [line for line in lines if not line.startswith("#")]
    assert all(line.split("{")[1].startswith('job="history",') for line in samples)
    names = [line.split("{")[0] for line in samples]
    families = [n.removesuffix("_total") for n in dict.fromkeys(names)]
    assert len(families) == len(set(families))  # each family's samples are contiguous


def test_empty_archive(tmp_path: Path) -> None:
    assert backfill_text(tmp_path / "none", tmp_path) == "# EOF\n"


def test_escape_label_value() -> None:
    assert escape_label_value('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_cli_file_and_stdout(
    archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "history.om"
    assert main(["backfill", "--archive", str(archive), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert err == "backfill: 2 records, 21 series, 70 samples (0 invalid files skipped)\n"
    assert main(["backfill", "--archive", str(archive)]) == 0
    assert capsys.readouterr().out == out.read_text(encoding="utf-8")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".history")] == []


def test_cli_missing_archive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backfill", "--archive", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"batch-metrics: error: no archive at {tmp_path / 'nope'} (")
    assert err.count("\n") == 1


def test_tsdb_writes_blocks_with_promtool(archive: Path, tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    blocks = tmp_path / "blocks"
    command = ["backfill", "--archive", str(archive), "--tsdb", str(blocks)]
    assert main([*command, "--label", "job=history"]) == 0
    (blocks / "wal").mkdir()  # promtool 2.42's dump opens the directory as a whole TSDB
    dumped = subprocess.run(
        [promtool, "tsdb", "dump", str(blocks)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    runs = [line for line in dumped.splitlines() if 'name__="batch_operations_total"' in line]
    assert all('job="history"' in line for line in runs)
    # promtool dump: labels, value, timestamp in milliseconds
    assert [line.split()[-2:] for line in runs] == [
        ["0", str(FIRST_END * 1000 - 1)],
        ["1", str(FIRST_END * 1000)],
        ["1", str(SECOND_END * 1000 - 1)],
        ["2", str(SECOND_END * 1000)],
    ]
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".om"] == []


def test_record_too_large_to_count_is_skipped(archive: Path, tmp_path: Path) -> None:
    with ArchiveIndex(archive, db_path=tmp_path / "index.db") as index:
        index.refresh()
        summaries = index.summaries()
    huge = summaries[0]._replace(file="batch-3-execute.json", duration_seconds=1e300)
    out = io.StringIO()
    stats = write_openmetrics([*summaries, huge], out)
    assert (stats.records, stats.skipped) == (2, 1)
    again = tmp_path / "again"
    again.mkdir()
    assert out.getvalue() == backfill_text(archive, again)
