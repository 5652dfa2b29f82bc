"""Turn the finished span tree of one batch run into its canonical record.

The input is every finished span of one batch: the root ``batch`` span, its ``stage`` and
``item`` spans and any other span below them (a subagent's LLM calls, say). The span contract
is :mod:`instrumentation.semconv`. Rules:

* **Items.** Each ``item`` span is one attempt. An item id seen several times (a retry) counts
  once, with the outcome of its last attempt (latest end). An item span without an outcome
  attribute is a failure when its status is ERROR, else a success. ``total_items`` is the number
  of distinct ids, or the batch's announced ``batch.items.total`` when that is larger (items
  never started count as not successful, and a note says so).
* **Stages.** A stage's duration runs from the first start to the last end of its stage spans
  (of its items when it has no stage span); its items are listed in order of first start (then id).
* **Tokens.** Every ``batch.tokens`` event on any span counts, so a subagent's tokens roll up
  into the stage it ran in and into the batch. Input tokens include cache reads (OTel GenAI).
  A provider-reported cost wins over the pricing table's estimate; an unknown model is
  unpriced (listed in ``unpriced_models``), never $0.
* **Errors.** Items whose final outcome is failure or partial, with error type and a bounded
  message, in order of first start; an exception from the batch body comes last, without id,
  unless it is the exception an item recorded on its way up (then it is that item's error, once).
* **Parallel efficiency** = sum of all item attempts' durations / the batch's wall time: the
  work done per second of wall time (1.0 = as if run one after another; N = N items at once).
  None when there are no timed items or no wall time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, cast

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode, format_span_id, format_trace_id

from exporter.archive.model import (
    BatchRecord,
    ErrorEntry,
    Metrics,
    OptimizationMetrics,
    RecordStatus,
    StageDuration,
    measured_efficiency,
    record_status,
)
from exporter.archive.pricing import PricingTable, default_pricing
from exporter.sdk.spans import ROUND_DIGITS, bounded_count, nonempty_str, span_attrs
from exporter.sdk.token_usage import sum_token_usage
from instrumentation import semconv as sc

__all__ = ["AssembleError", "assemble"]

_NS: Final = 1e9


class AssembleError(ValueError):
    """The spans do not hold exactly one usable batch root."""


@dataclass(slots=True)
class _Item:
    item_id: str
    first_start: int
    last_end: int
    outcome: str
    stage: int | None
    error_type: str | None
    error_message: str | None


def _seconds(start: int | None, end: int | None) -> float | None:
    if start is None or end is None or end < start:
        return None
    return round((end - start) / _NS, ROUND_DIGITS)


def _bounded(message: str | None) -> str | None:
    if message is None:
        return None
    line = " ".join(message.split())
    if len(line) > sc.MAX_ERROR_MESSAGE:
        line = line[: sc.MAX_ERROR_MESSAGE - 1] + "\u2026"
    return line


def _error_of(span: ReadableSpan) -> tuple[str | None, str | None]:
    """Error type and bounded message recorded on a span, from attributes or its exception."""
    attrs = span_attrs(span)
    error_type = nonempty_str(attrs.get(sc.ATTR_ERROR_TYPE))
    message = nonempty_str(attrs.get(sc.ATTR_ERROR_MESSAGE))
    for event in span.events:
        if event.name == "exception" and event.attributes:
            error_type = error_type or nonempty_str(event.attributes.get("exception.type"))
            message = message or nonempty_str(event.attributes.get("exception.message"))
    if message is None and span.status.status_code is StatusCode.ERROR:
        message = nonempty_str(span.status.description)
    return error_type, _bounded(message)


_TRACEBACK: Final = "Traceback (most recent call last):\n"


def _stacktrace(span: ReadableSpan) -> str | None:
    for event in span.events:
        if event.name == "exception" and event.attributes:
            trace = nonempty_str(event.attributes.get("exception.stacktrace"))
            if trace:
                return trace
    return None


def _escaped_from_an_item(root: ReadableSpan, spans: Sequence[ReadableSpan]) -> bool:
    """Whether the exception that ended the batch body is one an item span already recorded.

    An exception gains frames only at the top of its traceback as it travels up, so the one an
    item recorded ends the batch's: its last traceback (after any chained ones) and message are
    a suffix of the batch's. Such an exception is the item's error, counted once, with the item.
    """
    outer = _stacktrace(root)
    if outer is None:
        return False
    for span in spans:
        if span_attrs(span).get(sc.ATTR_KIND) != "item":
            continue
        inner = _stacktrace(span)
        if inner is None:
            continue
        last = inner.rfind(_TRACEBACK)
        tail = inner[last + len(_TRACEBACK) :] if last >= 0 else inner
        if tail and outer.endswith(tail):
            return True
    return False


def _find_root(spans: Sequence[ReadableSpan], running: bool) -> ReadableSpan:
    roots = [s for s in spans if span_attrs(s).get(sc.ATTR_KIND) == sc.KIND_BATCH]
    if len(roots) != 1:
        raise AssembleError(f"expected one batch span, found {len(roots)}")
    root = roots[0]
    if root.start_time is None or root.context is None:
        raise AssembleError("the batch span has not started")
    if root.end_time is None and not running:
        raise AssembleError("the batch span has not ended")
    if not nonempty_str(span_attrs(root).get(sc.ATTR_BATCH_ID)):
        raise AssembleError(f"the batch span has no {sc.ATTR_BATCH_ID}")
    return root


class _StageResolver:
    """The stage a span runs in: its own ``batch.stage`` or its nearest ancestor's."""

    def __init__(self, spans: Sequence[ReadableSpan]) -> None:
        self._by_id = {s.context.span_id: s for s in spans if s.context is not None}
        self._memo: dict[int, int | None] = {}

    def stage_of(self, span: ReadableSpan) -> int | None:
        chain: list[int] = []
        current: ReadableSpan | None = span
        stage: int | None = None
        while current is not None and current.context is not None:
            span_id = current.context.span_id
            if span_id in self._memo:
                stage = self._memo[span_id]
                break
            chain.append(span_id)
            own = bounded_count(span_attrs(current).get(sc.ATTR_STAGE))
            if own is not None:
                stage = own
                break
            parent = current.parent
            current = self._by_id.get(parent.span_id) if parent is not None else None
        for span_id in chain:
            self._memo[span_id] = stage
        return stage


def _collect_items(
    spans: Sequence[ReadableSpan], stages: _StageResolver
) -> tuple[dict[str, _Item], list[float]]:
    """Distinct items (last attempt wins) and the duration of every attempt."""
    items: dict[str, _Item] = {}
    attempt_seconds: list[float] = []
    item_spans = [s for s in spans if span_attrs(s).get(sc.ATTR_KIND) == sc.KIND_ITEM]
    for span in sorted(item_spans, key=lambda s: (s.end_time or 0, s.start_time or 0)):
        attrs = span_attrs(span)
        span_id = span.context.span_id if span.context is not None else 0
        item_id = nonempty_str(attrs.get(sc.ATTR_ITEM_ID)) or f"span-{format_span_id(span_id)}"
        outcome = nonempty_str(attrs.get(sc.ATTR_OUTCOME))
        if outcome not in sc.ITEM_OUTCOMES:
            outcome = "failure" if span.status.status_code is StatusCode.ERROR else "success"
        error_type, message = _error_of(span)
        start, end = span.start_time or 0, span.end_time or 0
        duration = _seconds(span.start_time, span.end_time)
        if duration is not None:
            attempt_seconds.append(duration)
        previous = items.get(item_id)
        items[item_id] = _Item(
            item_id=item_id,
            first_start=min(start, previous.first_start) if previous else start,
            last_end=end,
            outcome=outcome,
            stage=stages.stage_of(span),
            error_type=error_type,
            error_message=message,
        )
    return items, attempt_seconds


def _stage_durations(
    spans: Sequence[ReadableSpan],
    items: Sequence[_Item],
    stage_tokens: Mapping[int, tuple[int, int]],
) -> list[StageDuration]:
    windows: dict[int, tuple[int, int]] = {}
    for span in spans:
        attrs = span_attrs(span)
        number = bounded_count(attrs.get(sc.ATTR_STAGE))
        if attrs.get(sc.ATTR_KIND) != sc.KIND_STAGE or number is None or span.start_time is None:
            continue
        start, end = span.start_time, span.end_time or span.start_time
        if number in windows:  # the same stage number twice (a re-run stage): one window
            start, end = min(start, windows[number][0]), max(end, windows[number][1])
        windows[number] = (start, end)
    members: dict[int, list[_Item]] = {}
    for item in items:
        if item.stage is not None:
            members.setdefault(item.stage, []).append(item)
    for number, stage_items in members.items():
        if number not in windows:
            windows[number] = (
                min(i.first_start for i in stage_items),
                max(i.last_end for i in stage_items),
            )
    result: list[StageDuration] = []
    for number in sorted(windows):
        start, end = windows[number]
        tokens = stage_tokens.get(number)
        result.append(
            StageDuration(
                stage=number,
                duration_seconds=_seconds(start, end),
                items=[i.item_id for i in sorted(members.get(number, []), key=_first_start)],
                input_tokens=tokens[0] if tokens else None,
                output_tokens=tokens[1] if tokens else None,
            )
        )
    return result


def _first_start(item: _Item) -> tuple[int, str]:
    return item.first_start, item.item_id


def assemble(
    spans: Sequence[ReadableSpan],
    *,
    pricing: PricingTable | None = None,
    notes: Sequence[str] = (),
    crashed_at: int | None = None,
) -> BatchRecord:
    """Build the record of the one batch run whose finished spans are ``spans``.

    ``pricing`` defaults to the built-in table; ``notes`` are added to the record (what the
    caller could not measure). ``crashed_at`` (epoch ns) records a batch whose span never
    ended (the process is shutting down under it): it is taken as the end, and the status is
    ``crashed``. Raises AssembleError when there is no single ended batch span,
    and pydantic's ValidationError when the root's attributes break the record's rules (a bad
    batch id or operation).
    """
    root = _find_root(spans, running=crashed_at is not None)
    root_attrs = span_attrs(root)
    stages = _StageResolver(spans)
    items, attempt_seconds = _collect_items(spans, stages)
    ordered = sorted(items.values(), key=_first_start)
    counts = {o: sum(1 for i in ordered if i.outcome == o) for o in sc.ITEM_OUTCOMES}
    announced = bounded_count(root_attrs.get(sc.ATTR_TOTAL_ITEMS)) or 0
    total = max(len(ordered), announced)
    all_notes = list(notes)
    if announced > len(ordered):
        all_notes.append(
            f"{announced - len(ordered)} of {announced} announced items reported no outcome"
        )

    token_usage, stage_tokens = sum_token_usage(
        spans, stages.stage_of, pricing or default_pricing()
    )
    stage_durations = _stage_durations(spans, ordered, stage_tokens)

    errors = [
        ErrorEntry(item_id=i.item_id, error_type=i.error_type, error_message=i.error_message)
        for i in ordered
        if i.outcome != "success"
    ]
    body_type, body_message = _error_of(root)
    body_failed = root.status.status_code is StatusCode.ERROR or body_type is not None
    if body_failed and not _escaped_from_an_item(root, spans):
        errors.append(ErrorEntry(error_type=body_type, error_message=body_message))

    start_ns = cast(int, root.start_time)
    end_ns = root.end_time if crashed_at is None else max(crashed_at, start_ns)
    wall = _seconds(start_ns, end_ns)
    efficiency = measured_efficiency(sum(attempt_seconds), wall)
    status: RecordStatus = (
        "crashed"
        if crashed_at is not None
        else record_status(sc.run_outcome(total, counts["success"], counts["partial"], body_failed))
    )
    root_context = root.context
    assert root_context is not None  # checked by _find_root
    run_id = nonempty_str(root_attrs.get(sc.ATTR_RUN_ID)) or format_span_id(root_context.span_id)

    return BatchRecord.model_validate(
        {
            "batch_id": root_attrs.get(sc.ATTR_BATCH_ID),
            "operation": root_attrs.get(sc.ATTR_OPERATION),
            "timestamp": datetime.fromtimestamp(start_ns / _NS, tz=UTC),
            "duration_seconds": wall,
            "metrics": Metrics(
                total_items=total,
                stages=len(stage_durations),
                success_count=counts["success"],
                failure_count=counts["failure"],
                partial_count=counts["partial"],
                token_usage=token_usage,
                stage_durations=stage_durations or None,
                errors=errors or None,
            ),
            "optimization_metrics": OptimizationMetrics(parallel_efficiency=efficiency),
            "run_id": run_id,
            "status": status,
            "source": "instrumentation",
            "trace_id": format_trace_id(root_context.trace_id),
            "notes": all_notes or None,
        }
    )
