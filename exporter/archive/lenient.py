"""Reading every record the seed's schema accepts, whoever wrote it (the lenient read).

The archive is the seed's: its JSON schema allows any additional property, and other tools
write into the same directory. The model adds fields of its own (``status``, ``run_id``,
``source``, ``trace_id``, ``notes``, per-model usage, ...) and is stricter than the seed in
documented ways (non-negative and bounded counts, finite durations, counts that fit their
total). A document that breaks none of the seed's rules but some of ours is therefore read
here, not refused:

* a project field holding another type (a ``notes`` string, a ``status`` of another
  vocabulary, a ``run_id`` with a slash) is another tool's field: set aside, not used;
* a seed figure the model cannot hold (a negative count, a count past 2**53, a duration that
  is negative or overflows) is set aside, and the record keeps all its other figures;
* counts that exceed ``total_items``: ``total_items`` is set aside (the items counted are the
  total, as the reports already do for a record without one);
* a duration that would end after year 9999 is set aside;
* a ``batch_id`` that could not name a file is read as the batch's name and never used in a
  path (the writer checks every id it puts into a file name).

Figures in shapes seen in the wild outside ``metrics`` (a top-level ``token_usage`` with
``total`` and ``estimated_cost_usd``, a ``status``) fill the seed's places when those are
empty: :func:`read_elsewhere`, which the index uses, and which says what it used.

What was set aside is :attr:`BatchRecord.unused` (each with its place and reason), which
``validate`` reports as notes, and :func:`dump_with_unused` writes it back where it was.
Refused still: what is not JSON (``NaN`` is not), what the seed's schema refuses, and a
timestamp outside the years 1-9999 in UTC (no report could show it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Final, NamedTuple, get_args

from pydantic import ValidationError

from exporter.archive.model import (
    MAX_COUNT,
    MAX_USD,
    BatchRecord,
    TokenUsage,
    Unused,
    lenient_adapter,
)
from exporter.archive.timestamps import parse_timestamp

if TYPE_CHECKING:
    from exporter.archive.quick import QuickRecord

__all__ = [
    "ReadElsewhere",
    "dump_with_unused",
    "outcome_from_status",
    "read_elsewhere",
    "read_leniently",
    "seed_problems",
    "seed_schema",
]

# The keywords the seed's schema uses; a copy using others would not be checked faithfully.
_KEYWORDS: Final = frozenset(
    {"$schema", "title", "description", "type", "required", "properties", "items", "enum", "format"}
)
_MAX_PASSES: Final = 16  # each pass sets aside at least one value; a record has few layers


@cache
def seed_schema() -> dict[str, Any]:
    """The seed's draft-07 schema, as the seed PRP states it (a verbatim copy in the package)."""
    text = resources.files("exporter.data").joinpath("seed-batch-metrics.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    _check_keywords(schema)
    return schema


def _check_keywords(schema: dict[str, Any]) -> None:
    unknown = schema.keys() - _KEYWORDS
    if unknown:
        raise LookupError(f"the seed schema copy uses keywords this reader ignores: {unknown}")
    for sub in schema.get("properties", {}).values():
        _check_keywords(sub)
    if "items" in schema:
        _check_keywords(schema["items"])


# -- the seed's schema, checked ------------------------------------------------------------------


def _is_type(value: Any, kind: str) -> bool:
    """JSON schema's types as ``jsonschema`` reads them (3.0 is an integer, true is not)."""
    if isinstance(value, bool):
        return kind == "boolean"
    if kind == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    types: dict[str, type | tuple[type, ...]] = {
        "object": dict,
        "array": list,
        "string": str,
        "number": (int, float),
        "null": type(None),
    }
    return isinstance(value, types.get(kind, ()))


def seed_problems(document: Any) -> list[str]:
    """Why the seed's schema refuses ``document`` (empty: it accepts it), one line each.

    The seed's ``format: date-time`` is asserted as this project reads time stamps: RFC 3339,
    and the forms the seed's own scripts write.
    """
    return list(_problems(document, seed_schema(), ()))


def _place(path: tuple[str | int, ...]) -> str:
    return Unused(path, None, "").where or "record"


def _problems(value: Any, schema: dict[str, Any], path: tuple[str | int, ...]) -> Iterator[str]:
    kind = schema.get("type")
    if kind is not None and not _is_type(value, kind):
        yield f"{_place(path)}: {_shown(value)} is not of type {kind!r}"
        return
    if "enum" in schema and value not in schema["enum"]:
        yield f"{_place(path)}: {_shown(value)} is not one of {schema['enum']}"
    if schema.get("format") == "date-time" and isinstance(value, str):
        try:
            parse_timestamp(value)
        except ValueError:
            yield f"{_place(path)}: {_shown(value)} is not a date-time"
    if isinstance(value, dict):
        for name in schema.get("required", ()):
            if name not in value:
                yield f"{_place((*path, name))}: required"
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                yield from _problems(value[name], sub, (*path, name))
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            yield from _problems(item, schema["items"], (*path, i))


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str, allow_nan=True)
    return text if len(text) <= 40 else text[:37] + "..."


# -- the lenient read ----------------------------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_leniently(data: bytes | str, error: ValidationError) -> BatchRecord:
    """The record in ``data``, which the model refused with ``error``, read as far as it can be.

    Raises ``error`` when ``data`` is not JSON or not valid for the seed's schema, and a
    ValidationError when the record breaks a rule that no setting aside can mend (a time
    stamp outside the years 1-9999 in UTC).
    """
    try:  # UTF-8 only, as pydantic and the seed's own reader (read_text) take it
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        document = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError, TypeError):
        raise error from None
    if seed_problems(document):
        raise error
    unused: list[Unused] = []
    adapter = lenient_adapter()
    for _ in range(_MAX_PASSES):
        try:
            record = adapter.validate_python(document, context={"lenient": True})
        except ValidationError as exc:
            aside = [_set_aside(document, e) for e in exc.errors()]
            if any(u is None for u in aside):
                raise
            unused += [u for u in aside if u is not None and u.path]
        else:
            record._unused = tuple(unused)
            return record
    raise error


def _set_aside(document: dict[str, Any], error: Any) -> Unused | None:
    """Take the value ``error`` is about out of ``document``; None when it cannot go."""
    loc: tuple[str | int, ...] = tuple(error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "ends_after_year_9999":
        loc = ("duration_seconds",)
    elif error["type"] == "counts_exceed_total":
        loc = (*loc, "total_items")
        message += ": the items counted are the total"
    path, required, project_field = _droppable(loc)
    if path is None or required:
        return None
    value = _pop(document, path)
    if value is _MISSING:
        return Unused((), None, "")  # already set aside by another error of this pass
    if project_field:
        message = f"not this project's {path[-1]!r} ({message}): another tool's field"
    return Unused(path, value, message)


_MISSING: Final = object()


def _droppable(loc: tuple[str | int, ...]) -> tuple[tuple[str | int, ...] | None, bool, bool]:
    """The part of ``loc`` to set aside, whether the seed requires it, whether it is one of the
    project's own fields (a field of the model the seed does not define)."""
    schema: dict[str, Any] = seed_schema()
    model: type[Any] | None = BatchRecord
    path: list[str | int] = []
    for part in loc:
        if isinstance(part, int):
            if "items" not in schema:
                return None, False, False
            schema = schema["items"]
            path.append(part)
            continue
        properties = schema.get("properties", {})
        path.append(part)
        fields = getattr(model, "model_fields", {})
        if part not in properties:  # an extension: it goes whole
            return tuple(path), False, part in fields
        required = part in schema.get("required", ())
        schema = properties[part]
        model = _inner_model(fields[part].annotation) if part in fields else None
        if required and len(path) == len(loc):
            return tuple(path), True, False
    if not path or isinstance(path[-1], int):
        return None, False, False
    return tuple(path), False, False


def _inner_model(annotation: Any) -> type[Any] | None:
    """The pydantic model inside ``X | None`` or ``list[X] | None``, if any."""
    stack = [annotation]
    while stack:
        current = stack.pop()
        if isinstance(current, type) and hasattr(current, "model_fields"):
            return current
        stack.extend(get_args(current))
    return None


def _pop(document: Any, path: tuple[str | int, ...]) -> Any:
    node = document
    for part in path[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    if not isinstance(node, dict):
        return _MISSING
    return node.pop(path[-1], _MISSING)


def dump_with_unused(record: BatchRecord) -> str:
    """The record as :func:`dump_record` writes it, with what was set aside back in place.

    Values JSON cannot carry (an overflowing ``1e999`` read as infinity) stay out.
    """
    data = json.loads(record.model_dump_json(exclude_none=True, by_alias=True))
    restored = False
    for u in record.unused:
        try:
            json.dumps(u.value, allow_nan=False)
        except ValueError:
            continue
        node = data
        for part in u.path[:-1]:
            node = node.setdefault(part, {}) if isinstance(node, dict) else node[part]
        if isinstance(node, dict):
            node[u.path[-1]] = u.value
            restored = True
    if not restored:
        return record.model_dump_json(indent=2, exclude_none=True, by_alias=True) + "\n"
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


# -- figures in shapes seen in the wild ----------------------------------------------------------


class ReadElsewhere(NamedTuple):
    """A record's token usage, completed from where other tools put it, and what was used."""

    usage: TokenUsage | None
    fields: tuple[str, ...]  # e.g. ("token_usage.total", "status"); empty: all from ``metrics``


# Seen in the wild: a top-level ``token_usage`` of another shape, beside the seed's ``metrics``
# (``{"generation": {...}, "total": 66500, "estimated_cost_usd": 1.33}``). Per seed field,
# the names that tool (or one that put the seed's own object at the top) uses for it.
_WILD_USAGE: Final = (
    ("total_tokens", ("total", "total_tokens"), False),
    ("estimated_cost", ("estimated_cost_usd", "estimated_cost"), True),
    ("input_tokens", ("input_tokens",), False),
    ("output_tokens", ("output_tokens",), False),
)


def _usable(value: Any, *, usd: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if usd:  # NaN and infinities fail the comparison; a huge int is compared exactly
        return 0 <= value <= MAX_USD
    return isinstance(value, int) and 0 <= value <= MAX_COUNT


def read_elsewhere(record: BatchRecord) -> ReadElsewhere:
    """The figures of ``record``, taken from outside ``metrics`` where the seed's place is empty.

    * a top-level ``token_usage`` object gives ``total``/``estimated_cost_usd`` (and the
      seed's own names) for each of ``metrics.token_usage``'s figures that is missing;
    * a ``status`` (``completed``, ...) gives the run's outcome when no item count does: it
      is listed here for a record that is not ours (no ``source``).
    """
    usage = record.metrics.token_usage
    fields: list[str] = []
    wild = (record.model_extra or {}).get("token_usage")
    if isinstance(wild, dict):
        found: dict[str, Any] = {}
        for ours, names, usd in _WILD_USAGE:
            if usage is not None and getattr(usage, ours) is not None:
                continue
            name = next((n for n in names if _usable(wild.get(n), usd=usd)), None)
            if name is not None:
                found[ours] = wild[name]
                fields.append(f"token_usage.{name}")
        if found:
            usage = (usage or TokenUsage()).model_copy(update=found)
    if outcome_from_status(record):
        fields.append("status")
    return ReadElsewhere(usage, tuple(fields))


def outcome_from_status(record: BatchRecord | QuickRecord) -> bool:
    """Whether the run's outcome comes from its ``status`` (a record not ours, without item
    counts): what :func:`read_elsewhere` lists as ``status``."""
    m = record.metrics
    return (
        record.status is not None
        and record.source is None
        and m.success_count is None
        and m.failure_count is None
        and m.partial_count is None
    )
