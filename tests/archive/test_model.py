"""The record model: seed-compatible parsing, strict where it matters, safe batch ids."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from exporter.archive.model import (
    BATCH_ID_MAX_LENGTH,
    BatchRecord,
    InvalidBatchId,
    check_batch_id,
    checked_stage,
    describe_validation_error,
    dump_record,
    measured_efficiency,
    parse_record,
)
from tests.support.records import HOSTILE_IDS


def _minimal(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "batch_id": "47",
        "operation": "execute",
        "timestamp": "2025-11-01T10:00:00Z",
        "metrics": {"total_items": 3, "success_count": 2, "failure_count": 1},
    }
    document.update(overrides)
    return document


def test_round_trip_is_exact() -> None:
    record = BatchRecord.model_validate(
        _minimal(
            duration_seconds=12.5,
            run_id="r1",
            status="partial",
            source="instrumentation",
            trace_id="0" * 31 + "1",
            optimization_metrics={"parallel_efficiency": 2.5},
            extra_field={"kept": True},
        )
    )
    text = dump_record(record)
    assert parse_record(text) == record
    document = json.loads(text)
    assert document["extra_field"] == {"kept": True}
    assert document["timestamp"] == "2025-11-01T10:00:00Z"
    assert "partial_count" not in document["metrics"]  # None fields are left out


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2025-11-01 10:00:00 +0100", datetime(2025, 11, 1, 9, 0, tzinfo=UTC)),
        ("2025-11-01T10:00:00+01:00", datetime(2025, 11, 1, 9, 0, tzinfo=UTC)),
        ("2025-11-01T09:00:00Z", datetime(2025, 11, 1, 9, 0, tzinfo=UTC)),
    ],
)
def test_timestamps_in_seed_formats(timestamp: str, expected: datetime) -> None:
    record = BatchRecord.model_validate(_minimal(timestamp=timestamp))
    assert record.timestamp == expected


def test_naive_timestamp_is_local_time() -> None:
    record = BatchRecord.model_validate(_minimal(timestamp="2025-11-01T10:00:00"))
    assert record.timestamp.tzinfo is not None
    assert record.timestamp.replace(tzinfo=None) == datetime(2025, 11, 1, 10, 0)
    offset = datetime(2025, 11, 1, 10, 0).astimezone().utcoffset()
    assert record.timestamp.utcoffset() == offset


def test_end_timestamp() -> None:
    record = BatchRecord.model_validate(_minimal(duration_seconds=90))
    assert record.end_timestamp == datetime(2025, 11, 1, 10, 1, 30, tzinfo=UTC)
    no_duration = BatchRecord.model_validate(_minimal())
    assert no_duration.end_timestamp is None
    shifted = BatchRecord.model_validate(
        _minimal(timestamp=datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=2))))
    )
    assert shifted.timestamp.utcoffset() == timedelta(hours=2)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"duration_seconds": -1}, "duration_seconds"),
        ({"duration_seconds": math.nan}, "duration_seconds"),
        ({"duration_seconds": math.inf}, "duration_seconds"),
        ({"operation": "deploy"}, "operation"),
        ({"timestamp": "yesterday-ish"}, "timestamp"),
        ({"metrics": {"total_items": -1}}, "metrics.total_items"),
        ({"metrics": {"total_items": 2, "success_count": 2, "failure_count": 1}}, "metrics"),
        ({"metrics": {"stage_durations": [{"stage": 1, "duration_seconds": -0.5}]}}, "metrics"),
        ({"run_id": "../../x"}, "run_id"),
        ({"trace_id": "XYZ"}, "trace_id"),
        ({"optimization_metrics": {"parallel_efficiency": -2}}, "optimization_metrics"),
    ],
)
def test_invalid_values_are_rejected_with_their_location(
    change: dict[str, Any], where: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        BatchRecord.model_validate(_minimal(**change))
    assert describe_validation_error(caught.value).startswith(where)


def test_counts_that_do_not_add_up_name_the_numbers() -> None:
    with pytest.raises(ValidationError, match=r"success \+ failure \+ partial = 4 exceeds total"):
        BatchRecord.model_validate(
            _minimal(metrics={"total_items": 3, "success_count": 2, "partial_count": 2})
        )


def test_json_nan_is_rejected() -> None:
    with pytest.raises(ValidationError):
        parse_record(json.dumps(_minimal(duration_seconds=math.nan)))


@pytest.mark.parametrize("batch_id", HOSTILE_IDS)
def test_hostile_batch_ids_are_refused(batch_id: str) -> None:
    with pytest.raises(InvalidBatchId) as caught:
        check_batch_id(batch_id)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 300
    with pytest.raises(ValidationError, match="batch id"):
        BatchRecord.model_validate(_minimal(batch_id=batch_id))


@pytest.mark.parametrize("batch_id", ["47", "PRP-47.7", "a_b-c.d", "x" * BATCH_ID_MAX_LENGTH])
def test_ordinary_batch_ids_pass(batch_id: str) -> None:
    assert check_batch_id(batch_id) == batch_id


@given(st.text(max_size=80))
def test_any_accepted_batch_id_is_a_plain_file_name(batch_id: str) -> None:
    try:
        check_batch_id(batch_id)
    except InvalidBatchId:
        return
    name = f"batch-{batch_id}-execute.json"
    assert "/" not in name and "\\" not in name and "\x00" not in name and ".." not in batch_id


def test_stage_numbers_and_efficiencies_are_kept_only_when_a_record_can_hold_them() -> None:
    # The sources (PRP front matter, orchestrator files, span attributes) pass through these:
    # what they cannot hold becomes unknown, never a record that fails validation.
    assert [checked_stage(v) for v in (3, -1, 2**53, 2**53 + 1, True, "2", None)] == [
        3,
        -1,
        2**53,
        None,
        None,
        None,
        None,
    ]
    assert measured_efficiency(390.0, 400.0) == 0.975
    assert measured_efficiency(0.0, 400.0) is None
    assert measured_efficiency(86_400.0, 1e-6) is None  # a microsecond of wall time
