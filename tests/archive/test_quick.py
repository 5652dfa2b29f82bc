"""The fast path reads a record exactly as the model does, or leaves it to the model.

For any bytes, :func:`read_quick` either returns None or a record whose projection is the one
the model's reading gives (and the model reads the document as written, nothing set aside).
And what our own writers write does take the fast path, or it would be of no use.
"""

from __future__ import annotations

import copy
import json
import random
import re
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from exporter.archive.lenient import outcome_from_status
from exporter.archive.model import BatchRecord, ValidationError, dump_record, parse_record
from exporter.archive.quick import QuickRecord, read_quick
from exporter.index.summary import project, project_quick
from tests.support.documents import FIELD_PATHS, VALID, any_json, mutated, seed_documents
from tests.support.generated_archive import make_record


def _agrees(data: bytes) -> bool:
    """Whether the fast path took ``data``; if it did, the model must read it the same."""
    quick = read_quick(data)
    if quick is None:
        return False
    record = parse_record(data)  # raises if the model refuses what the fast path took
    assert record.unused == ()
    assert project_quick(*quick) == project(record)
    return True


def _encoded(document: Any) -> bytes:
    return json.dumps(document).encode()


def _extras(value: Any) -> bool:
    """Whether a model or anything in it holds a field the model does not name."""
    if isinstance(value, BaseModel):
        return bool(value.model_extra) or any(_extras(v) for v in dict(value).values())
    if isinstance(value, list):
        return any(_extras(v) for v in value)
    return False


# -- what our writers write takes the fast path ----------------------------------------------


def test_every_generated_record_takes_the_fast_path() -> None:
    rng = random.Random(47)
    for n in range(400):
        record = make_record(rng, n, with_duration=n % 7 != 0)
        assert _agrees(dump_record(record).encode()), dump_record(record)


def test_a_record_with_every_field_takes_the_fast_path() -> None:
    document = copy.deepcopy(VALID)
    document.update(
        source="instrumentation",
        trace_id="0" * 32,
        notes=["no cost: unpriced model"],
        optimization_metrics={
            "shared_context_size": 3,
            "token_savings": -5,
            "parallel_efficiency": 1.5,
            "drift_scores": [{"prp_id": "PRP-1", "drift": 0.25}],
        },
    )
    document["metrics"].update(
        partial_count=0,
        stages=1,
        token_usage={
            "input_tokens": 10,
            "output_tokens": 5,
            "total_tokens": 15,
            "estimated_cost": 0.1,
            "cost_source": "mixed",
            "unpriced_models": ["m2"],
            "by_model": [
                {"model": "m1", "input_tokens": 6, "output_tokens": 3, "cost_usd": 0.1},
                {"model": "m2", "input_tokens": 4, "output_tokens": 2, "cache_read_tokens": 7},
            ],
        },
    )
    document["metrics"]["stage_durations"][0].update(input_tokens=1, output_tokens=2)
    assert _agrees(_encoded(document))


# -- what it leaves to the model --------------------------------------------------------------


def _with(path: tuple[str | int, ...], value: Any) -> bytes:
    document = copy.deepcopy(VALID)
    *parents, key = path
    target: Any = document
    for parent in parents:
        target = target[parent]
    target[key] = value
    return _encoded(document)


LEFT_TO_THE_MODEL = {
    "an integer written as a float": _with(("metrics", "success_count"), 2.0),
    "an integer written as a boolean": _with(("metrics", "failure_count"), True),
    "an integer written as a string": _with(("metrics", "total_items"), "3"),
    "a count past 2**53": _with(("metrics", "total_items"), 2**53 + 1),
    "a negative duration": _with(("duration_seconds",), -1.0),
    "a duration past the limit": _with(("duration_seconds",), 1e10),
    "an extra field": _with(("x_other_tool",), {"a": 1}),
    "an extra field in metrics": _with(("metrics", "x"), 1),
    "an extra field in a stage": _with(("metrics", "stage_durations", 0, "x"), 1),
    "a wild token usage": _with(("token_usage",), {"total": 5, "estimated_cost_usd": 0.1}),
    "counts past the total": _with(("metrics", "total_items"), 2),
    "an outcome from the status alone": _encoded(
        {**VALID, "metrics": {"total_items": 3}, "status": "completed"}
    ),
    "a run id ending in a newline": _with(("run_id",), "r1\n"),
    "a run id with a slash": _with(("run_id",), "a/b"),
    "a batch id with '..'": _with(("batch_id",), "a..b"),
    "a batch id ending in a newline": _with(("batch_id",), "47\n"),
    "a batch id of 65 characters": _with(("batch_id",), "a" * 65),
    "an empty batch id": _with(("batch_id",), ""),
    "an upper-case trace id": _with(("trace_id",), "A" * 32),
    "a trace id ending in a newline": _with(("trace_id",), "a" * 32 + "\n"),
    "a status of another vocabulary": _with(("status",), "done"),
    "an unknown operation": _with(("operation",), "deploy"),
    "a timestamp as a number": _with(("timestamp",), 1_700_000_000),
    "an instant before year 1": _with(("timestamp",), "0001-01-01T00:00:00+05:00"),
    "a run ending after year 9999": _encoded(
        {**VALID, "timestamp": "9999-12-31T00:00:00Z", "duration_seconds": 1e8}
    ),
    "NaN": _encoded(VALID).replace(b"61.5", b"NaN"),
    "a lone surrogate": _with(("metrics", "errors", 0, "error_type"), "\ud800"),
    "a byte order mark": b"\xef\xbb\xbf" + _encoded(VALID),
    "trailing data": _encoded(VALID) + b" {}",
    "an empty model name": _encoded(
        {**VALID, "metrics": {"token_usage": {"by_model": [{"model": ""}]}}}
    ),
    "a model name of 201 characters": _encoded(
        {**VALID, "metrics": {"token_usage": {"by_model": [{"model": "é" * 201}]}}}
    ),
    "an array": b"[]",
    "nothing": b"",
}


@pytest.mark.parametrize("data", LEFT_TO_THE_MODEL.values(), ids=LEFT_TO_THE_MODEL.keys())
def test_what_the_model_reads_otherwise_is_left_to_it(data: bytes) -> None:
    assert read_quick(data) is None


READ_THE_SAME = {
    "a naive timestamp (local time)": _with(("timestamp",), "2025-11-01T10:00:00"),
    "git's date format": _with(("timestamp",), "2025-11-01 10:00:00 +0100"),
    "a leap second": _with(("timestamp",), "2016-12-31T23:59:60Z"),
    "lower-case t and z": _with(("timestamp",), "2025-11-01t10:00:00z"),
    "a date alone (local midnight)": _with(("timestamp",), "2025-11-01"),
    "nanoseconds": _with(("timestamp",), "2025-11-01T10:00:00.123456789Z"),
    "a duplicate key (the last wins)": _encoded(VALID).replace(
        b'"duration_seconds": 61.5', b'"duration_seconds": 1.0, "duration_seconds": 61.5'
    ),
    "an integer for a float": _with(("duration_seconds",), 61),
    "the largest count": _with(("metrics", "total_items"), 2**53),
    "a stage without a number": _with(("metrics", "stage_durations", 0, "stage"), None),
    "a surrogate pair": _with(("metrics", "errors", 0, "error_type"), "\U0001f600"),
    "a batch id of 64 characters": _with(("batch_id",), "a" * 64),
    "a model name of 200 characters, 400 bytes": json.dumps(
        {**VALID, "metrics": {"token_usage": {"by_model": [{"model": "é" * 200}]}}},
        ensure_ascii=False,
    ).encode(),
}


@pytest.mark.parametrize("data", READ_THE_SAME.values(), ids=READ_THE_SAME.keys())
def test_what_the_fast_path_takes_the_model_reads_the_same(data: bytes) -> None:
    quick = read_quick(data)
    try:
        parse_record(data)
    except ValidationError:
        assert quick is None  # the model refuses it: so must the fast path
        return
    if quick is not None:
        assert _agrees(data)


# -- any document ------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=seed_documents)
def test_seed_documents_are_read_the_same_or_left_to_the_model(document: dict[str, Any]) -> None:
    data = _encoded(document)
    _agrees(data)
    # as our writer writes it back: nothing set aside, the fast path takes it
    try:
        record = parse_record(data)
    except ValidationError:
        return
    if type(record) is BatchRecord and not record.unused and not _extras(record):
        rewritten = dump_record(record).encode()
        # only a record whose outcome comes from its status goes to the model then
        assert _agrees(rewritten) or outcome_from_status(record), rewritten


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=mutated())
def test_mutated_documents_are_read_the_same_or_left_to_the_model(document: Any) -> None:
    _agrees(_encoded(document))


@settings(max_examples=400, deadline=None)
@given(path=st.sampled_from(FIELD_PATHS), value=any_json)
def test_any_value_anywhere_is_read_the_same_or_left_to_the_model(
    path: tuple[str | int, ...], value: Any
) -> None:
    try:
        data = _with(path, value)
    except (KeyError, IndexError, TypeError):
        return
    _agrees(data)


# -- the structs mirror the model ------------------------------------------------------------

_ANNOTATIONS = {"title", "description", "default", "format", "additionalProperties", "$schema"}
Fact = tuple[tuple[str, ...], str, str]


def _anchorless(pattern: str) -> str:
    """A pattern without its anchors, as either side writes them."""
    match = re.fullmatch(r"\\A\(\?:(.*)\)\\Z", pattern) or re.fullmatch(r"\^(.*)\$", pattern)
    return match.group(1) if match else pattern


def _facts(schema: dict[str, Any], defs: dict[str, Any], path: tuple[str, ...] = ()) -> set[Fact]:
    """What a JSON schema requires of a value, as (place, keyword, value) facts: references
    resolved, annotations left out, the branches of ``X | None`` merged."""
    if "$ref" in schema:
        return _facts(defs[schema["$ref"].rsplit("/", 1)[1]], defs, path)
    facts: set[Fact] = set()
    for key, value in schema.items():
        if key in _ANNOTATIONS or key == "$defs" or (key == "type" and "enum" in schema):
            continue
        if key == "anyOf":
            for branch in value:
                facts |= _facts(branch, defs, path)
        elif key == "properties":
            for name, sub in value.items():
                facts |= _facts(sub, defs, (*path, name))
        elif key == "items":
            facts |= _facts(value, defs, (*path, "[]"))
        elif key in ("required", "enum"):
            facts |= {(path, key, json.dumps(v)) for v in value}
        elif key == "pattern":
            facts.add((path, key, _anchorless(value)))
        else:
            facts.add((path, key, json.dumps(value)))
    return facts


def test_the_structs_state_the_models_fields_and_limits() -> None:
    model = BatchRecord.model_json_schema()
    quick = msgspec.json.schema(QuickRecord)
    ours, theirs = _facts(model, model["$defs"]), _facts(quick, quick["$defs"])
    # compared without annotations: the timestamp's format (the structs read it with the
    # model's own function) and extra fields (the model keeps them, the structs refuse them)
    assert theirs == ours, theirs ^ ours
