"""Hostile and broken input: each is refused with one clear line, and nothing is damaged."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path

import pytest

from exporter.archive.files import (
    MAX_RECORD_BYTES,
    InvalidRecordFile,
    LoadedRecord,
    find_runs,
    iter_archive,
    read_record,
    write_record,
)
from exporter.archive.model import (
    BatchRecord,
    InvalidBatchId,
    ValidationError,
    describe_validation_error,
)
from exporter.cli.main import main
from exporter.index.store import ArchiveIndex
from exporter.sdk.configure import configure
from instrumentation import batch, item, stage

HOSTILE_IDS = {
    "dotdot": "../../etc/passwd",
    "slash": "a/b",
    "backslash": "a\\b",
    "nul": "47\x00.json",
    "newline": "47\nrm",
    "10kB": "4" * 10_000,
    "unicode": "批次-47",
    "rtl": "47\u202egpj",
    "dot": ".",
    "dotdot-only": "..",
    "hidden": ".hidden",
    "dash": "-rf",
    "empty": "",
}

VALID = {
    "batch_id": "47",
    "operation": "execute",
    "timestamp": "2025-11-01T10:00:00+00:00",
    "duration_seconds": 120.5,
    "metrics": {"total_items": 3, "success_count": 2, "failure_count": 1},
    "run_id": "r1",
}


def _tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_symlink():
            digest.update(str(path.readlink()).encode())
        elif path.is_file():
            with path.open("rb") as handle:
                digest.update(handle.read(1 << 20))  # the 100 MB sparse file: its start
            digest.update(str(path.stat().st_size).encode())
    return digest.hexdigest()


def _one_line(text: str) -> bool:
    return "\n" not in text and 0 < len(text) <= 300


# -- batch ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_id", HOSTILE_IDS.values(), ids=HOSTILE_IDS.keys())
def test_hostile_batch_id_is_refused_by_the_model_and_the_archive(
    tmp_path: Path, batch_id: str
) -> None:
    with pytest.raises(ValidationError) as info:
        BatchRecord.model_validate({**VALID, "batch_id": batch_id})
    reason = describe_validation_error(info.value)
    assert reason.startswith("batch_id: ")
    assert _one_line(reason)
    forged = BatchRecord.model_validate(VALID).model_copy(update={"batch_id": batch_id})
    archive = tmp_path / "archive"
    with pytest.raises(InvalidBatchId) as refused:
        write_record(archive, forged)
    assert _one_line(str(refused.value))
    with pytest.raises(InvalidBatchId):
        find_runs(tmp_path, batch_id, "execute")
    assert list(tmp_path.rglob("*")) == []  # not even the archive directory was made


def test_hostile_batch_ids_in_the_instrumentation_never_break_the_host(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    archive = tmp_path / "archive"
    handle = configure(archive, set_global=False, otlp=False, checkpoint_interval=0)
    results = []
    with caplog.at_level(logging.DEBUG, logger="exporter"):
        for batch_id in HOSTILE_IDS.values():
            with (
                batch(
                    batch_id,
                    "execute",
                    tracer_provider=handle.tracer_provider,
                    meter_provider=handle.meter_provider,
                ) as run,
                stage(1),
                item("PRP-1"),
            ):
                results.append(batch_id)
            assert run.outcome == "success"
    handle.shutdown()
    assert results == list(HOSTILE_IDS.values())
    assert list(tmp_path.rglob("*")) == []  # no record, no marker, no directory
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1
    assert errors[0].startswith("batch '../../etc/passwd' was not recorded: batch_id: ")
    assert _one_line(errors[0].split(" (further problems")[0])
    later = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(later) == len(HOSTILE_IDS) - 1
    assert all(len(message) < 600 for message in later)  # the 10 kB id is not logged whole
    assert "batch '\\x00" not in "".join(later) and "'47\\x00.json'" in "".join(later)


@pytest.mark.parametrize("batch_id", ["../x", "a/b", "4" * 10_000, "批次"])
def test_hostile_batch_id_on_the_command_line_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], batch_id: str
) -> None:
    before = _tree_hash(tmp_path)
    code = main(
        [
            "analyze",
            "--batch",
            batch_id,
            "--operation",
            "execute",
            "--root",
            str(tmp_path),
            "--archive",
            str(tmp_path / "archive"),
        ]
    )
    err = capsys.readouterr().err
    assert code != 0
    assert err.startswith("batch-metrics: error: ")
    assert err.count("\n") == 1 and len(err) < 400
    assert _tree_hash(tmp_path) == before


# -- broken files in the archive ----------------------------------------------------------------


def _valid_text(**changes: object) -> str:
    return json.dumps({**VALID, **changes})


BROKEN: dict[str, tuple[bytes, str]] = {
    # name: (content, expected start of the reason)
    "empty": (b"", "empty file"),
    "blank": (b"  \n\t ", "empty file"),
    "malformed": (b"{batch_id: 47}", "malformed JSON: "),
    "truncated": (_valid_text().encode()[:57], "malformed JSON: "),
    "binary": (bytes(range(256)) * 4, "malformed JSON: "),
    "nul": (b'{"batch_id": "47\x00"}', "malformed JSON: "),
    "utf16": (_valid_text().encode("utf-16"), "malformed JSON: "),
    "array": (b"[1, 2, 3]", "wrong schema: record: "),
    "nested-list": (b"[" * 100_000 + b"]" * 100_000, "malformed JSON: "),
    "nested-object": (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "malformed JSON: "),
    "nested-in-field": (
        _valid_text(notes="X").replace('"X"', "[" * 50_000 + "]" * 50_000).encode(),
        "malformed JSON: ",
    ),
    "nan": (_valid_text().replace("120.5", "NaN").encode(), "wrong schema: duration_seconds"),
    "infinity": (
        _valid_text().replace("120.5", "Infinity").encode(),
        "wrong schema: duration_seconds",
    ),
    "count-as-string": (
        _valid_text(metrics={"total_items": "-1"}).encode(),
        "wrong schema: metrics.total_items",
    ),
    "bad-operation": (_valid_text(operation="deploy").encode(), "wrong schema: operation"),
    "not-a-date": (_valid_text(timestamp="yesterday").encode(), "wrong schema: timestamp"),
    "year-10000": (_valid_text(timestamp="10000-01-01T00:00:00Z").encode(), "wrong schema: "),
    "huge-unix-time": (_valid_text(timestamp=1e20).encode(), "wrong schema: timestamp"),
    "not-a-time-in-utc": (
        _valid_text(timestamp="0001-01-01T00:00:00+05:00").encode(),
        "wrong schema: timestamp: Value error, the instant is outside the years 1-9999 in UTC",
    ),
}
# Valid for the seed's schema, which allows them, but beyond what the model can use: the record
# is read and the value is set aside with its reason (exporter.archive.lenient).
SET_ASIDE: dict[str, tuple[str, str, object]] = {
    # name: (content, where, the value set aside)
    "negative-duration": (_valid_text(duration_seconds=-5), "duration_seconds", -5),
    "negative-count": (
        _valid_text(metrics={"total_items": -1}),
        "metrics.total_items",
        -1,
    ),
    "counts-exceed-total": (
        _valid_text(metrics={"total_items": 2, "success_count": 2, "failure_count": 1}),
        "metrics.total_items",
        2,
    ),
    "bad-run-id": (_valid_text(run_id="../r"), "run_id", "../r"),
    # valid JSON that Python reads as infinity: not finite, set aside
    "1e999": (_valid_text().replace("120.5", "1e999"), "duration_seconds", math.inf),
    "ends-after-9999": (
        _valid_text(timestamp="9999-12-31T00:00:00Z", duration_seconds=86_400 * 2),
        "duration_seconds",
        86_400 * 2,
    ),
}


@pytest.mark.parametrize("batch_id", HOSTILE_IDS.values(), ids=HOSTILE_IDS.keys())
def test_a_hostile_batch_id_in_a_file_is_read_as_a_name_never_as_a_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], batch_id: str
) -> None:
    # The seed's schema allows any string; the record is read (its figures count), the id is
    # never used to name a file, and validate says so in a note.
    archive = tmp_path / "archive"
    archive.mkdir()
    path = archive / "batch-other-execute.json"
    path.write_text(_valid_text(batch_id=batch_id), encoding="utf-8")
    record = read_record(path)
    assert record.batch_id == batch_id and record.metrics.success_count == 2
    with pytest.raises(InvalidBatchId):
        write_record(tmp_path / "copy", record)
    assert not (tmp_path / "copy").exists()
    assert main(["validate", str(path)]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"note: {path}: batch id ")
    lines = err.splitlines()
    assert len(lines) == 2 and all("\n" not in x and len(x) < 300 + len(str(path)) for x in lines)


@pytest.mark.parametrize("name", BROKEN.keys())
def test_broken_file_is_refused_with_one_line(tmp_path: Path, name: str) -> None:
    content, expected = BROKEN[name]
    path = tmp_path / f"batch-{name}-execute.json"
    path.write_bytes(content)
    with pytest.raises(InvalidRecordFile) as info:
        read_record(path)
    assert info.value.reason.startswith(expected), info.value.reason
    assert _one_line(info.value.reason)
    assert path.read_bytes() == content


@pytest.mark.parametrize("name", SET_ASIDE.keys())
def test_seed_valid_values_beyond_the_model_are_set_aside(tmp_path: Path, name: str) -> None:
    content, where, value = SET_ASIDE[name]
    path = tmp_path / f"batch-{name}-execute.json"
    path.write_text(content, encoding="utf-8")
    record = read_record(path)
    assert [(u.where, u.value) for u in record.unused] == [(where, value)]
    assert all(_one_line(u.reason) for u in record.unused)
    assert record.batch_id == "47"


def test_huge_sparse_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "batch-huge-execute.json"
    with path.open("wb") as handle:
        handle.truncate(100 * 1024 * 1024)  # 100 MB, sparse: no disk used
    started = time.perf_counter()
    with pytest.raises(InvalidRecordFile) as info:
        read_record(path)
    elapsed = time.perf_counter() - started
    assert info.value.reason == f"larger than {MAX_RECORD_BYTES // (1024 * 1024)} MiB"
    # Reading 100 MB would take far longer; the size is judged from fstat alone.
    assert elapsed < 0.5


def test_fifo_and_directory_named_like_records_do_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "batch-fifo-execute.json"
    os.mkfifo(fifo)  # opening it for reading without O_NONBLOCK would wait for a writer
    folder = tmp_path / "batch-dir-execute.json"
    folder.mkdir()
    reasons = {e.path.name: e.reason for e in iter_archive(tmp_path) if isinstance(e, Exception)}
    assert reasons == {
        "batch-dir-execute.json": "is not a regular file",
        "batch-fifo-execute.json": "is not a regular file",
    }


def test_symlinks_out_of_the_archive_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "secret.json"
    outside.write_text(_valid_text(), encoding="utf-8")
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "batch-47-execute.json").symlink_to(outside)
    (archive / "batch-48-execute.json").symlink_to("/etc/passwd")
    (archive / "batch-49-execute.json").symlink_to(archive / "missing")
    found = list(iter_archive(archive))
    assert [(e.path.name, e.reason) for e in found if isinstance(e, InvalidRecordFile)] == [
        ("batch-47-execute.json", "is a symbolic link (refused)"),
        ("batch-48-execute.json", "is a symbolic link (refused)"),
        ("batch-49-execute.json", "is a symbolic link (refused)"),
    ]
    assert find_runs(archive, "47", "execute") == []


def _hostile_archive(root: Path) -> Path:
    archive = root / "archive"
    archive.mkdir()
    for name, (content, _) in BROKEN.items():
        (archive / f"batch-{name}-execute.json").write_bytes(content)
    with (archive / "batch-huge-execute.json").open("wb") as handle:
        handle.truncate(100 * 1024 * 1024)
    (root / "outside.json").write_text(_valid_text(), encoding="utf-8")
    (archive / "batch-link-execute.json").symlink_to(root / "outside.json")
    os.mkfifo(archive / "batch-fifo-execute.json")
    (archive / "batch-47-execute.json").write_text(_valid_text(), encoding="utf-8")
    (archive / "batch-old-execute.json").write_text(
        _valid_text(batch_id="old", timestamp="1969-07-20T20:17:00Z"), encoding="utf-8"
    )
    (archive / "batch-far-execute.json").write_text(
        _valid_text(batch_id="far", timestamp="9999-12-31T00:00:00Z", duration_seconds=60),
        encoding="utf-8",
    )
    return archive


def test_validate_over_a_hostile_archive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = _hostile_archive(tmp_path)
    before = _tree_hash(tmp_path)
    started = time.perf_counter()
    assert main(["validate", str(archive)]) == 1
    elapsed = time.perf_counter() - started
    captured = capsys.readouterr()
    invalid = len(BROKEN) + 3  # + huge, symlink, fifo
    lines = captured.err.splitlines()
    assert len(lines) == invalid
    assert all(line.startswith(f"invalid: {archive}/batch-") for line in lines)
    assert all(len(line) < 400 for line in lines)
    assert f"invalid: {archive}/batch-link-execute.json: is a symbolic link (refused)" in lines
    assert captured.out == f"checked {invalid + 3} record file(s): 3 valid, {invalid} invalid\n"
    assert _tree_hash(tmp_path) == before
    assert elapsed < 10  # the 100 MB file is not read; generous for slow CI disks


def test_index_over_a_hostile_archive_keeps_the_valid_records(tmp_path: Path) -> None:
    archive = _hostile_archive(tmp_path)
    before = _tree_hash(archive)
    with ArchiveIndex(archive, tmp_path / "index.sqlite") as index:
        result = index.refresh()
        names = sorted(s.batch_id for s in index.summaries())
    assert names == ["47", "far", "old"]
    assert len(result.invalid) == len(BROKEN) + 3
    assert result.invalid["batch-link-execute.json"] == "is a symbolic link (refused)"
    assert _tree_hash(archive) == before
    loaded = [e for e in iter_archive(archive) if isinstance(e, LoadedRecord)]
    assert sorted(e.record.batch_id for e in loaded) == ["47", "far", "old"]


@pytest.mark.parametrize(
    "changes",
    [
        {"metrics": {"total_items": 10**30}},
        {"duration_seconds": 1e300},
        # finite, but duration x efficiency overflowed the index's sums to inf, and removing
        # the record then computed inf - inf
        {"optimization_metrics": {"parallel_efficiency": 1e308}},
        # an int SQLite cannot store: every refresh of the index failed on it
        {"metrics": {"stage_durations": [{"stage": 10**20, "duration_seconds": 1.0}]}},
    ],
    ids=["count-1e30", "duration-1e300", "efficiency-1e308", "stage-1e20"],
)
def test_absurdly_large_values_are_set_aside_by_the_loader(
    tmp_path: Path, changes: dict[str, object]
) -> None:
    # The seed's schema allows them; the record is read without them (and says so).
    path = tmp_path / "batch-47-execute.json"
    path.write_text(_valid_text(**changes), encoding="utf-8")
    record = read_record(path)
    (aside,) = record.unused
    assert aside.where.split(".")[0] in changes
    assert record.metrics.success_count == 2 or "metrics" in changes
    with ArchiveIndex(tmp_path, tmp_path / "index.sqlite") as index:
        index.refresh()
        (summary,) = index.summaries()
    assert summary.batch_id == "47"


@pytest.mark.parametrize(
    "text",
    [
        '{"extra": Infinity}',
        '{"stage_durations": [{"stage": 1, "note": [1, {"x": NaN}]}]}',
    ],
    ids=["top-level", "nested"],
)
def test_nan_and_infinity_in_unknown_fields_are_refused(tmp_path: Path, text: str) -> None:
    # Found by the fuzz run: Python's JSON reader takes them, JSON has no such numbers, and
    # written back they became null, so a record did not read back as itself.
    extra = json.loads(text)
    content = json.loads(_valid_text())
    if "stage_durations" in extra:
        content["metrics"].update(extra)
    else:
        content.update(extra)
    path = tmp_path / "batch-47-execute.json"
    path.write_text(json.dumps(content), encoding="utf-8")  # json.dumps writes NaN/Infinity
    with pytest.raises(InvalidRecordFile, match="NaN and Infinity are not JSON numbers") as err:
        read_record(path)
    assert _one_line(err.value.reason)


@pytest.mark.parametrize("selection", [["--all"], ["--since", "1970-01-01"]], ids=["all", "since"])
@pytest.mark.parametrize("waves", [(1100,), (200, 900)], ids=["bulk", "row-by-row"])
def test_counts_whose_sum_leaves_64_bits_are_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], selection: list[str], waves: tuple[int, ...]
) -> None:
    # Each count is within the model's bounds (2**53); 1100 of them add up past 2**63, where
    # SQLite's sums fail (a scan) or turn into floats (the rollups' upsert, in a bulk load too).
    archive = tmp_path / "archive"
    archive.mkdir()
    huge = {"total_items": 2**53, "success_count": 2**53}
    argv = ["trends", *selection, "--archive", str(archive), "--no-save"]
    written = 0
    for wave in waves:
        if written:
            assert main(argv) == 0  # the index is built, kept row by row from here on
        for n in range(written, written + wave):
            (archive / f"batch-{n}-execute.json").write_text(
                _valid_text(batch_id=str(n), metrics=huge), encoding="utf-8"
            )
        written += wave
    capsys.readouterr()
    before = _tree_hash(archive)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert _one_line(err.strip()) and "added up to more than 2**63" in err
    assert _tree_hash(archive) == before


def test_validate_of_an_impossible_path_is_one_error_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["validate", "4" * 5000]) == 2
    assert capsys.readouterr().err.count("\n") == 1
