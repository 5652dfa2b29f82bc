"""``backfill``: exact OpenMetrics output on a regular grid, accepted by the real promtool."""

from __future__ import annotations

import io
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exporter.archive.files import write_record
from exporter.cli.main import main
from exporter.index.store import ArchiveIndex
from exporter.prometheus.backfill import escape_label_value, write_openmetrics
from tests.support.records import rec
from tests.support.servers import require_binary

T = datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp()  # 09:00:00


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    path = tmp_path / "archive"
    # ends 09:00:40 and 09:02:40
    for batch, duration, start in (
        ("1", 30.0, datetime(2026, 3, 2, 9, 0, 10, tzinfo=UTC)),
        ("2", 100.0, datetime(2026, 3, 2, 9, 1, tzinfo=UTC)),
    ):
        done = rec(batch, duration=duration, start=start, status="completed", success=5, failure=0)
        write_record(path, done)
    return path


def backfill_text(archive: Path, tmp_path: Path, step: int = 60) -> str:
    with ArchiveIndex(archive, db_path=tmp_path / "index.db") as index:
        index.refresh()
        out = io.StringIO()
        write_openmetrics(index.summaries(), out, step=step)
    return out.getvalue()


def series_lines(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_counter_starts_at_zero_and_has_a_sample_every_step(archive: Path, tmp_path: Path) -> None:
    text = backfill_text(archive, tmp_path)
    ops = 'batch_operations_total{operation="execute",outcome="success"} '
    # grid: 08:59 (all zero), 09:00, 09:01 (first record counted), 09:02, 09:03 (second)
    assert series_lines(text, ops) == [
        f"{ops}0.0 {int(T) - 60}",
        f"{ops}0.0 {int(T)}",
        f"{ops}1.0 {int(T) + 60}",
        f"{ops}1.0 {int(T) + 120}",
        f"{ops}2.0 {int(T) + 180}",
    ]
    total = 'batch_operation_duration_seconds_sum{operation="execute",outcome="success"} '
    assert [line.split()[1] for line in series_lines(text, total)] == [
        "0.0",
        "0.0",
        "30.0",
        "30.0",
        "130.0",
    ]
    gauge = 'batch_last_completion_timestamp_seconds{operation="execute",outcome="success"} '
    assert [
        (float(v), int(t))
        for _, v, t in (line.rsplit(" ", 2) for line in series_lines(text, gauge))
    ] == [
        (T + 40, int(T) + 60),
        (T + 40, int(T) + 120),
        (T + 160, int(T) + 180),
    ]


def test_structure_families_sorted_eof(archive: Path, tmp_path: Path) -> None:
    text = backfill_text(archive, tmp_path)
    lines = text.splitlines()
    assert lines[0] == "# TYPE batch_operation_duration_seconds histogram"
    assert (
        lines[1] == "# HELP batch_operation_duration_seconds Wall time of one batch operation run."
    )
    assert "# TYPE batch_operations counter" in lines
    assert text.endswith("\n# EOF\n")
    assert text.count("# EOF") == 1
    # one histogram point: buckets in order up to +Inf, then count and sum, at one timestamp
    point = [line for line in lines if line.endswith(f" {int(T) + 180}")][:17]
    assert [p.split("{")[0].rsplit("_", 1)[1] for p in point] == ["bucket"] * 15 + ["count", "sum"]
    assert 'le="15.0"} 0.0 ' in point[2]
    assert 'le="30.0"} 1.0 ' in point[3]  # the 30 s run: le is inclusive
    assert 'le="60.0"} 1.0 ' in point[4]
    assert 'le="120.0"} 2.0 ' in point[5]  # and the 100 s run
    assert 'le="+Inf"} 2.0 ' in point[14]
    names = [line.split("{")[0] for line in lines if not line.startswith("#")]
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
    assert err == "backfill: 2 records, 21 series, 101 samples (0 invalid files skipped)\n"
    assert main(["backfill", "--archive", str(archive)]) == 0
    assert capsys.readouterr().out == out.read_text(encoding="utf-8")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".history")] == []


def test_cli_missing_archive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backfill", "--archive", str(tmp_path / "nope")]) == 2
    assert (
        capsys.readouterr().err
        == f"batch-metrics: error: archive {tmp_path / 'nope'} is not a directory\n"
    )


def test_promtool_accepts_it(archive: Path, tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    out = tmp_path / "history.om"
    assert main(["backfill", "--archive", str(archive), "--output", str(out)]) == 0
    blocks = tmp_path / "blocks"
    created = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(out), str(blocks)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    (blocks / "wal").mkdir()  # promtool 2.42's dump opens the directory as a whole TSDB
    dumped = subprocess.run(
        [promtool, "tsdb", "dump", str(blocks)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    ops = [line for line in dumped.splitlines() if 'name__="batch_operations_total"' in line]
    # promtool dump: labels, value, timestamp in milliseconds
    assert [line.split()[-2:] for line in ops] == [
        ["0", str((int(T) - 60) * 1000)],
        ["0", str(int(T) * 1000)],
        ["1", str((int(T) + 60) * 1000)],
        ["1", str((int(T) + 120) * 1000)],
        ["2", str((int(T) + 180) * 1000)],
    ]


def test_cli_refuses_a_history_too_large(
    archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "history.om"
    command = ["backfill", "--archive", str(archive), "-o", str(out)]
    assert main([*command, "--max-samples", "90"]) == 1
    assert capsys.readouterr().err == (
        "batch-metrics: error: the history needs 105 samples (21 series x 5 steps of 60 s), more "
        "than the limit of 90: use a step of at least 120 s or raise the limit\n"
    )
    assert not out.exists()
    assert main([*command, "--max-samples", "90", "--step", "120"]) == 0
    assert main([*command, "--max-samples", "20"]) == 1
    assert capsys.readouterr().err.endswith("more than the limit of 20: raise the limit\n")


def test_record_too_large_to_count_is_skipped(archive: Path, tmp_path: Path) -> None:
    with ArchiveIndex(archive, db_path=tmp_path / "index.db") as index:
        index.refresh()
        summaries = index.summaries()
    huge = summaries[0]._replace(file="batch-3-execute.json", duration_seconds=1e300)
    out = io.StringIO()
    stats = write_openmetrics([*summaries, huge], out)
    assert (stats.records, stats.skipped, stats.samples) == (2, 1, 101)
    again = tmp_path / "again"
    again.mkdir()
    assert out.getvalue() == backfill_text(archive, again)
