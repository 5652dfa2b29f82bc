"""The shipped JSON schema is generated from the model, and our records satisfy the seed's own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from exporter.archive.files import read_record, write_record
from exporter.archive.model import dump_record, parse_record
from exporter.archive.schema import build_schema, main, render_schema
from exporter.sdk.assemble import assemble
from tests.support.seed import assert_valid_for_seed, seed_schema
from tests.support.span_trees import PRICING, three_stage_tree

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "schemas" / "batch-metrics.json"


def test_committed_schema_is_the_generated_one() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render_schema()
    assert main([str(COMMITTED), "--check"]) == 0


def test_generated_schema_is_valid_draft_07_with_seed_header() -> None:
    schema = build_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    seed = seed_schema()
    for key in ("$schema", "title", "description"):
        assert schema[key] == seed[key]
    assert schema["required"] == seed["required"]
    assert set(seed["properties"]) <= set(schema["properties"])


def test_schema_check_detects_stale_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "batch-metrics.json"
    stale.write_text("{}\n", encoding="utf-8")
    assert main([str(stale), "--check"]) == 1
    assert "is stale" in capsys.readouterr().err
    assert main([str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == render_schema()


def test_assembled_record_validates_against_seed_and_shipped_schemas(tmp_path: Path) -> None:
    record = assemble(three_stage_tree().finished(), pricing=PRICING)
    path = write_record(tmp_path, record)
    document = json.loads(path.read_text(encoding="utf-8"))
    assert_valid_for_seed(document)
    shipped = jsonschema.Draft7Validator(build_schema(), format_checker=jsonschema.FormatChecker())
    assert list(shipped.iter_errors(document)) == []
    assert read_record(path) == record


# Records shaped exactly as the seed's analyze-batch.py writes them (json.dumps(metrics, indent=2)).
SEED_GENERATE = {
    "batch_id": "47",
    "operation": "generate",
    "timestamp": "2025-11-01 10:00:00 +0100",  # git log --format=%ai
    "duration_seconds": 5400.0,
    "metrics": {
        "total_items": 3,
        "stages": 2,
        "success_count": 3,
        "failure_count": 0,
        "partial_count": 0,
        "stage_durations": [
            {"stage": "1", "duration_seconds": 0, "items": ["PRP-47.1.1", "PRP-47.1.2"]},
            {"stage": "2", "duration_seconds": 0, "items": ["PRP-47.2.1"]},
        ],
    },
}
SEED_EXECUTE = {
    "batch_id": "47",
    "operation": "execute",
    "timestamp": "2025-11-02T09:15:42.123456",  # datetime.now().isoformat(), naive
    "duration_seconds": 0.0,
    "metrics": {
        "total_items": 3,
        "success_count": 1,
        "failure_count": 1,
        "partial_count": 1,
        "errors": [
            {"item_id": "PRP-47.2.1", "error_type": "execution_failure", "error_message": "Unknown"}
        ],
    },
}
# PRPs without a `stage:` in their front matter: the seed writes "stage": null.
SEED_GENERATE_NO_STAGE = {
    **SEED_GENERATE,
    "metrics": {
        "total_items": 1,
        "stages": 1,
        "success_count": 1,
        "failure_count": 0,
        "partial_count": 0,
        "stage_durations": [{"stage": None, "duration_seconds": 0, "items": ["PRP-47.1.1"]}],
    },
}
SEED_REVIEW = {
    "batch_id": "47",
    "operation": "review",
    "timestamp": "2025-11-03T18:00:00.000001",
    "metrics": {"total_items": 0, "success_count": 0},
    "optimization_metrics": {"shared_context_size": 0, "token_savings": 0},
}


@pytest.mark.parametrize(
    "document", [SEED_GENERATE, SEED_EXECUTE, SEED_REVIEW, SEED_GENERATE_NO_STAGE]
)
def test_records_written_by_seed_scripts_load(tmp_path: Path, document: dict[str, Any]) -> None:
    path = tmp_path / f"batch-47-{document['operation']}.json"
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    record = read_record(path)
    assert record.batch_id == "47"
    assert record.operation == document["operation"]
    assert record.timestamp.tzinfo is not None
    assert record.metrics.success_count == document["metrics"]["success_count"]
    # what we write back is valid for the seed (a null stage is left out, as None fields are)
    assert_valid_for_seed(json.loads(dump_record(record)))


def test_seed_git_timestamp_keeps_its_offset() -> None:
    record = parse_record(json.dumps(SEED_GENERATE))
    assert record.timestamp.isoformat() == "2025-11-01T10:00:00+01:00"
    assert record.metrics.stage_durations is not None
    assert [s.stage for s in record.metrics.stage_durations] == [1, 2]
