"""Every document the seed's schema accepts is read, with all its seed-defined figures counted.

Documents are generated from the seed's own schema (``tests.support.seed.seed_schema``) and
carry arbitrary extra fields of any JSON type, under any name and under every name the model
itself uses (``status``, ``run_id``, ``notes``, ``by_model``, ...: taken from the model, so a
field added later is covered too). Each must load, and each seed figure must either reach the
index summary unchanged or be named in the record's ``unused`` with its reason.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from exporter.archive.files import read_record
from exporter.archive.lenient import seed_problems
from exporter.archive.lenient import seed_schema as shipped_seed_schema
from exporter.archive.model import BatchRecord, parse_record
from exporter.archive.timestamps import IncompleteDateError, UnknownZoneError, parse_timestamp
from exporter.cli.main import main
from exporter.cli.validate import check_paths
from exporter.index.store import ArchiveIndex, RecordSummary
from exporter.prometheus.collector import ArchiveCollector
from tests.support.documents import PROJECT_NAMES, mutated, seed_documents
from tests.support.seed import seed_schema, seed_validator

# -- what the record and the index must say --------------------------------------------------


def _set_aside(record: BatchRecord, path: tuple[str | int, ...]) -> bool:
    return any(path[: len(u.path)] == u.path for u in record.unused)


def _value(document: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        if isinstance(document, dict):
            document = document.get(part)
        elif isinstance(document, list) and isinstance(part, int) and part < len(document):
            document = document[part]
        else:
            return None
    return document


def _expected(record: BatchRecord, document: dict[str, Any], *path: str | int) -> Any:
    return None if _set_aside(record, path) else _value(document, path)


SUMMARY_PATHS: dict[str, tuple[str, ...]] = {
    "duration_seconds": ("duration_seconds",),
    "total_items": ("metrics", "total_items"),
    "success_count": ("metrics", "success_count"),
    "failure_count": ("metrics", "failure_count"),
    "partial_count": ("metrics", "partial_count"),
    "stages": ("metrics", "stages"),
    "input_tokens": ("metrics", "token_usage", "input_tokens"),
    "output_tokens": ("metrics", "token_usage", "output_tokens"),
    "total_tokens": ("metrics", "token_usage", "total_tokens"),
    "estimated_cost": ("metrics", "token_usage", "estimated_cost"),
    "parallel_efficiency": ("optimization_metrics", "parallel_efficiency"),
}


# Where the seed's place is empty, a top-level token_usage of another tool's shape fills it.
WILD_NAMES: dict[str, tuple[tuple[str, ...], float]] = {
    "total_tokens": (("total", "total_tokens"), 2**53),
    "estimated_cost": (("estimated_cost_usd", "estimated_cost"), 1e12),
    "input_tokens": (("input_tokens",), 2**53),
    "output_tokens": (("output_tokens",), 2**53),
}


def _wild(document: dict[str, Any], name: str) -> Any:
    usage = document.get("token_usage")
    if not isinstance(usage, dict):
        return None
    names, bound = WILD_NAMES[name]
    for key in names:
        value = usage.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if (isinstance(value, int) or name == "estimated_cost") and 0 <= value <= bound:
            return value
    return None


def _check_summary(summary: RecordSummary, record: BatchRecord, document: dict[str, Any]) -> None:
    assert summary.batch_id == document["batch_id"]
    assert summary.operation == document["operation"]
    assert summary.timestamp == parse_timestamp(document["timestamp"]).timestamp()
    for name, path in SUMMARY_PATHS.items():
        expected = _expected(record, document, *path)
        if expected is None and name in WILD_NAMES:  # another tool's shape, at the top level
            expected = _wild(document, name)
        assert getattr(summary, name) == expected, name
    stages = _value(document, ("metrics", "stage_durations")) or []
    assert [(s.stage, s.duration_seconds, s.items) for s in summary.stage_durations] == [
        (
            _expected(record, document, "metrics", "stage_durations", i, "stage"),
            _expected(record, document, "metrics", "stage_durations", i, "duration_seconds"),
            len(stage.get("items", [])),
        )
        for i, stage in enumerate(stages)
    ]
    errors = _value(document, ("metrics", "errors")) or []
    assert list(summary.error_types) == [e.get("error_type") or "unknown" for e in errors]


def _only_limits(record: BatchRecord) -> None:
    """What was set aside is a project field of another type, or a figure beyond a documented
    limit of the model: never a figure the model could have held."""
    for u in record.unused:
        assert u.reason and "\n" not in u.reason
        if u.path[-1] in PROJECT_NAMES and "another tool's field" in u.reason:
            continue
        assert isinstance(u.value, int | float), (u.where, u.value, u.reason)
        limits = ("greater than or equal", "less than or equal", "exceeds total_items")
        assert any(x in u.reason for x in (*limits, "after year 9999", "finite")), u


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=seed_documents)
def test_every_seed_valid_document_is_read_with_its_figures(document: dict[str, Any]) -> None:
    assert list(seed_validator().iter_errors(document)) == []
    assert seed_problems(document) == []
    with tempfile.TemporaryDirectory() as directory:
        archive = Path(directory) / "archive"
        archive.mkdir()
        path = archive / "batch-generated-execute.json"
        path.write_text(json.dumps(document), encoding="utf-8")
        record = read_record(path)
        _only_limits(record)
        (finding,) = check_paths([path])
        assert finding.reason is None
        assert len(finding.notes) >= len(record.unused)
        with ArchiveIndex(archive, Path(directory) / "index.sqlite") as index:
            result = index.refresh()
            assert result.invalid == {}
            (summary,) = index.summaries()
        _check_summary(summary, record, document)


# -- the runtime's seed check agrees with jsonschema ----------------------------------------


def test_the_shipped_seed_schema_is_the_seeds() -> None:
    assert shipped_seed_schema() == seed_schema()


@settings(max_examples=300, deadline=None)
@given(document=mutated())
def test_seed_check_agrees_with_jsonschema(document: Any) -> None:
    ours = [p for p in seed_problems(document) if not p.endswith("is not a date-time")]
    theirs = list(jsonschema.Draft7Validator(seed_schema()).iter_errors(document))
    assert bool(ours) == bool(theirs), (ours, [e.message for e in theirs])


def test_timestamps_in_utc_and_leap_seconds() -> None:
    assert parse_timestamp("1990-12-31T23:59:60Z") == datetime(1991, 1, 1, tzinfo=UTC)
    assert parse_timestamp("2020-01-01t10:00:00z") == datetime(2020, 1, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("2025-11-01 10:00:00 UTC", datetime(2025, 11, 1, 10, tzinfo=UTC)),
        ("Sat Nov  1 10:00:00 GMT 2025", datetime(2025, 11, 1, 10, tzinfo=UTC)),
        ("2025-11-01 10:00:00 +0100", datetime(2025, 11, 1, 9, tzinfo=UTC)),
    ],
)
def test_zones_by_name_or_offset_keep_their_instant(written: str, expected: datetime) -> None:
    assert parse_timestamp(written) == expected


@pytest.mark.parametrize("zone", ["EST", "IST", "O"])
def test_a_zone_name_without_a_known_offset_is_refused_not_taken_as_local_time(
    zone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dateutil would warn and return a naive time, which reads as local time: hours off."""
    monkeypatch.setattr(time, "tzname", ("UTC", "UTC"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no UnknownTimezoneWarning either
        with pytest.raises(UnknownZoneError, match=f"unknown time zone '{zone}'"):
            parse_timestamp(f"2025-11-01 10:00:00 {zone}")
        document = {**OURS, "timestamp": f"2025-11-01 10:00:00 {zone}"}
        with pytest.raises(ValidationError, match="unknown time zone"):
            parse_record(json.dumps(document))


@pytest.mark.parametrize("zone", ["UTC+3", "GMT-5", "CET+1"])
def test_a_zone_name_glued_to_an_offset_is_refused_as_ambiguous(zone: str) -> None:
    """dateutil reads GMT-5 the POSIX way, as +05:00: ten hours from what people mean."""
    with pytest.raises(UnknownZoneError, match=re.escape(f"ambiguous time zone '{zone}'")):
        parse_timestamp(f"2025-11-01 10:00:00 {zone}")
    # an offset with the zone's name beside it, as mail and git write them, is read
    expected = datetime(2025, 11, 1, 4, 30, tzinfo=UTC)
    assert parse_timestamp("2025-11-01 10:00:00 +0530 (IST)") == expected


@pytest.mark.parametrize("written", ["10:00", "Nov 1 10:00", "Nov 2025"])
def test_a_time_without_its_full_date_is_refused_not_dated_today(written: str) -> None:
    """dateutil completes a partial date from today's: a record would move with the clock."""
    with pytest.raises(IncompleteDateError, match="no full date"):
        parse_timestamp(written)
    assert parse_timestamp("Nov 1 2025 10:00") == datetime(2025, 11, 1, 10).astimezone()


def test_the_local_zone_by_name_is_local_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "EST5EDT")
    time.tzset()
    try:
        parsed = parse_timestamp("2025-01-15 10:00:00 EST")
    finally:
        monkeypatch.undo()
        time.tzset()
    assert parsed == datetime(2025, 1, 15, 15, tzinfo=UTC)


# -- validate: three verdicts ----------------------------------------------------------------

OURS = {
    "batch_id": "47",
    "operation": "execute",
    "timestamp": "2025-11-01T10:00:00Z",
    "duration_seconds": 120.5,
    "metrics": {"total_items": 3, "success_count": 2, "failure_count": 1},
    "status": "partial",
    "notes": ["no stage durations: the orchestrator wrote none"],
}


def test_validate_tells_invalid_from_noted_from_understood(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "batch-47-execute.json").write_text(json.dumps(OURS), encoding="utf-8")
    theirs = {**OURS, "batch_id": "48", "notes": "Successfully generated", "status": "done"}
    (archive / "batch-48-execute.json").write_text(json.dumps(theirs), encoding="utf-8")
    broken = {k: v for k, v in OURS.items() if k != "metrics"}  # the seed requires metrics
    (archive / "batch-49-execute.json").write_text(json.dumps(broken), encoding="utf-8")
    assert main(["validate", str(archive)]) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"note: {archive}/batch-48-execute.json: status: not used: not this project's 'status' "
        "(Input should be 'completed', 'partial', 'failed' or 'crashed'): another tool's field",
        f"note: {archive}/batch-48-execute.json: notes: not used: not this project's 'notes' "
        "(Input should be a valid list): another tool's field",
        f"invalid: {archive}/batch-49-execute.json: wrong schema: metrics: Field required",
    ]
    assert captured.out == "checked 3 record file(s): 2 valid (1 with notes), 1 invalid\n"
    (archive / "batch-49-execute.json").unlink()
    assert main(["validate", str(archive), "--json"]) == 0  # notes alone: exit 0
    document = json.loads(capsys.readouterr().out)
    assert document["valid"] == 2 and document["invalid"] == []
    assert [n["path"] for n in document["notes"]] == [f"{archive}/batch-48-execute.json"]


def test_validate_notes_what_the_seed_refuses_but_the_model_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the seed's own analyze-batch.py writes front-matter stages as strings
    seed_written = {**OURS, "metrics": {"stage_durations": [{"stage": "1", "items": []}]}}
    path = tmp_path / "batch-47-execute.json"
    path.write_text(json.dumps(seed_written), encoding="utf-8")
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().err == (
        f"note: {path}: not valid for the seed's schema, read anyway: "
        "metrics.stage_durations[0].stage: \"1\" is not of type 'integer'\n"
    )


# -- every command over an archive of such documents -----------------------------------------


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(documents=st.lists(seed_documents, min_size=1, max_size=4))
def test_every_command_reads_an_archive_of_seed_valid_documents(
    capsys: pytest.CaptureFixture[str], documents: list[dict[str, Any]]
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        archive = Path(directory) / "archive"
        archive.mkdir()
        for n, document in enumerate(documents):
            name = f"batch-{n}-{document['operation']}.json"
            (archive / name).write_text(json.dumps(document), encoding="utf-8")
        capsys.readouterr()
        assert main(["validate", str(archive)]) == 0
        assert "0 invalid" in capsys.readouterr().out
        base = ["--archive", str(archive)]
        assert main(["trends", *base, "--no-save", "--format", "json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["records"] == len(documents) and report["invalid_files"] == {}
        runs = {op: t["runs"] for op, t in report["operations"].items()}
        by_operation: dict[str, int] = {}
        for document in documents:
            by_operation[document["operation"]] = by_operation.get(document["operation"], 0) + 1
        assert runs == by_operation
        assert main(["prioritize", *base, "--format", "json"]) == 0
        output = Path(directory) / "history.om"
        assert main(["backfill", *base, "--output", str(output)]) == 0
        operations_total = sum(
            float(line.split()[-2])
            for line in output.read_text(encoding="utf-8").splitlines()
            if line.startswith("batch_operations_total{")
        )
        assert operations_total >= len(documents)  # cumulative samples: the last is the count
        with ArchiveIndex(archive, Path(directory) / "serve.sqlite") as index:
            registry = CollectorRegistry(auto_describe=False)
            registry.register(ArchiveCollector(index))
            served = sum(
                registry.get_sample_value(
                    "batch_operations_total", {"operation": op, "outcome": outcome}
                )
                or 0
                for op in by_operation
                for outcome in ("success", "failure", "partial")
            )
        assert served == len(documents)
        capsys.readouterr()
