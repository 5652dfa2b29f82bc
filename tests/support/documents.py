"""Documents for property tests of the readers: a record to vary, and what hypothesis draws.

* :data:`VALID`, a record the model reads, with :data:`FIELD_PATHS` to put any JSON value at
  (:data:`any_json`, NaN and infinities included);
* :data:`seed_documents`: every document the seed's schema accepts, with extra fields of any
  JSON type under any name and under every name the model itself uses (:data:`PROJECT_NAMES`,
  taken from the model, so a field added later is covered too); :func:`mutated` breaks one.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st
from pydantic import BaseModel

from exporter.archive.model import BatchRecord
from tests.support.seed import seed_schema

VALID: dict[str, Any] = {
    "batch_id": "47",
    "operation": "review",
    "timestamp": "2025-11-01T10:00:00+00:00",
    "duration_seconds": 61.5,
    "metrics": {
        "total_items": 3,
        "success_count": 2,
        "failure_count": 1,
        "token_usage": {"input_tokens": 10, "output_tokens": 5, "estimated_cost": 0.1},
        "stage_durations": [{"stage": 1, "duration_seconds": 2.0, "items": ["a", "b", "c"]}],
        "errors": [{"item_id": "c", "error_type": "E", "error_message": "m"}],
    },
    "run_id": "r1",
    "status": "partial",
}
VALID_BYTES = json.dumps(VALID).encode()

any_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and infinities included: json.dumps writes NaN / Infinity tokens
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
FIELD_PATHS = [
    ("batch_id",),
    ("operation",),
    ("timestamp",),
    ("duration_seconds",),
    ("run_id",),
    ("metrics",),
    ("metrics", "total_items"),
    ("metrics", "success_count"),
    ("metrics", "token_usage"),
    ("metrics", "stage_durations"),
    ("metrics", "errors"),
]


def _project_names(model: type[BaseModel]) -> set[str]:
    """Every field name of the model and the models inside it."""
    names: set[str] = set()
    stack: list[Any] = [model]
    seen: set[type[BaseModel]] = set()
    while stack:
        current = stack.pop()
        if isinstance(current, type) and issubclass(current, BaseModel):
            if current in seen:
                continue
            seen.add(current)
            for name, info in current.model_fields.items():
                names.add(name)
                stack.append(info.annotation)
        else:
            stack.extend(getattr(current, "__args__", ()))
    return names


PROJECT_NAMES = sorted(_project_names(BatchRecord))

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)

integers = st.one_of(
    st.integers(0, 50),
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.integers(0, 2**60).map(float),  # 3.0 is an integer for JSON schema
)
numbers = st.one_of(
    st.floats(0, 1e4, allow_nan=False),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**64), 2**64),
)


@st.composite
def date_times(draw: st.DrawFn) -> str:
    """RFC 3339 date-times, in the forms other tools write them."""
    moment = draw(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
    minutes = draw(st.integers(-23 * 60 - 59, 23 * 60 + 59))
    offset = timezone(timedelta(minutes=minutes))
    timespec = draw(st.sampled_from(["seconds", "microseconds"]))
    text = moment.replace(tzinfo=offset).isoformat(timespec=timespec)
    if minutes == 0 and draw(st.booleans()):
        text = text.removesuffix("+00:00") + draw(st.sampled_from(["Z", "z"]))
    if draw(st.booleans()):
        text = text.replace("T", "t")
    return text


def _extras(known: set[str]) -> st.SearchStrategy[dict[str, Any]]:
    names = st.sampled_from([n for n in PROJECT_NAMES if n not in known]) | st.text(max_size=10)
    return st.dictionaries(names.filter(lambda n: n not in known), json_values, max_size=4)


def from_seed(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values the seed's (sub)schema accepts, with extra fields in every object."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        return date_times() if schema.get("format") == "date-time" else st.text(max_size=20)
    if kind == "array":
        return st.lists(from_seed(schema.get("items", {})), max_size=3)
    if kind == "object":
        return _objects(schema)
    return {"integer": integers, "number": numbers}.get(str(kind), json_values)


@st.composite
def _objects_drawn(draw: st.DrawFn, schema: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", ()))
    document: dict[str, Any] = draw(_extras(set(properties)))
    for name, sub in properties.items():
        if name in required or draw(st.booleans()):
            document[name] = draw(from_seed(sub))
    return document


def _objects(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    return _objects_drawn(schema)


# The shape seen in the wild: a top-level token_usage of another tool, beside ``metrics``.
wild_usage = st.fixed_dictionaries(
    {},
    optional={
        "generation": json_values,
        "total": integers | json_values,
        "estimated_cost_usd": numbers | integers | json_values,
        "input_tokens": integers,
    },
)


@st.composite
def _documents(draw: st.DrawFn) -> dict[str, Any]:
    document: dict[str, Any] = draw(from_seed(seed_schema()))
    if draw(st.integers(0, 3)) == 0:
        document["token_usage"] = draw(wild_usage)
    return document


seed_documents = _documents()


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    document = draw(seed_documents)
    paths: list[tuple[str, ...]] = [
        ("batch_id",),
        ("operation",),
        ("timestamp",),
        ("metrics",),
        ("duration_seconds",),
    ]
    metrics = document["metrics"]
    paths += [("metrics", k) for k in metrics]
    *parents, key = draw(st.sampled_from(paths))
    target = document
    for parent in parents:
        target = target[parent]
    if draw(st.booleans()):
        target[key] = draw(json_values)
    else:
        target.pop(key, None)
    return document
