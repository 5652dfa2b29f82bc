"""batch-metrics instrumentation: trace and measure LLM-agent batch operations.

Depends on ``opentelemetry-api`` only. Without an OpenTelemetry SDK configured every call is a
cheap no-op; with one (``exporter.configure(...)`` or your own providers) each batch becomes a
span tree ``batch {operation}`` -> ``batch.stage {n}`` -> ``batch.item {id}`` plus metrics.

Usage
-----
::

    from instrumentation import ContextThreadPoolExecutor, batch, item, record_tokens
    from instrumentation import stage, traced_stage

    def run_prp(prp_id):
        with item(prp_id) as it:                                # an exception = failure
            result = subagent.run(prp_id)
            record_tokens(input=result.input_tokens, output=result.output_tokens,
                          model=result.model)
            if result.unfinished:
                it.set_outcome("partial", error_type="Timeout", message=result.note)

    def run_parallel(prp_ids):
        with ContextThreadPoolExecutor(max_workers=4) as pool:  # items keep stage and batch
            return list(pool.map(run_prp, prp_ids))

    @traced_stage(1)
    def foundation():
        return run_parallel(["PRP-47.1.1", "PRP-47.1.2"])

    with batch("47", "execute", total_items=3):
        foundation()
        with stage(2, name="integration"):
            run_parallel(["PRP-47.2.1"])

``async with batch(...)`` and ``@traced_stage`` on ``async def`` work the same way; tasks made
by ``asyncio.gather`` inherit the current batch and stage. ``with stage(2):`` is the context
manager form of a stage. For outcomes read after the fact (an orchestrator's result files) use
``mark_item("PRP-47.2.1", "failure", duration_seconds=812.5, error_type="TestFailure")``.

Configuration
-------------
Spans and metrics go to the global OpenTelemetry providers, looked up at each ``batch(...)``
call, unless ``tracer_provider=`` / ``meter_provider=`` are passed to :func:`batch`; stages,
items and token records use their batch's providers. Tracers and instruments are created once
per provider.

A thread begins with an empty context, so work handed to a thread does not know its batch:
submit it through :class:`ContextThreadPoolExecutor` (or ``loop.run_in_executor`` with one),
wrap it with :func:`propagate`, or use ``asyncio.to_thread``, which copies the context itself.
Otherwise its items and tokens are not recorded. Tasks of ``asyncio`` need nothing.

A batch whose span does not record (no SDK configured, or its trace sampled out) starts no
spans for its stages and items, which could not record either; it still counts items, tokens
and errors on the metrics and works out its outcome, so metrics-only setups lose nothing.

Telemetry never breaks the host: an internal failure (a provider, processor or exporter that
raises) is logged once per kind on the ``instrumentation`` logger and swallowed; return values
and exceptions of your code pass through unchanged. ``KeyboardInterrupt``, ``SystemExit`` and
``asyncio.CancelledError`` are never caught: spans still end, marked failure.

API
---
- :func:`batch` ``(batch_id, operation, *, run_id=None, total_items=None, tracer_provider=None,
  meter_provider=None)``: one operation run (``generate``, ``execute``, ``review``,
  ``update-context``). Its outcome is success if every item succeeded, partial if some did,
  failure if none did (even partly) or the body raised; an item run again counts once, with its
  last outcome, and announced ``total_items`` that never report are not successes
  (:func:`semconv.run_outcome`, the rule the exporter applies too). Records
  ``batch.operation.duration``, ``batch.operations``, ``batch.operations.running`` and the last
  completion/success times.
- :class:`traced_stage` ``(stage, name=None)`` / :data:`stage`: a stage, as decorator or
  context manager; records ``batch.stage.duration``.
- :func:`item` ``(item_id)`` -> :class:`Item` with ``set_outcome(outcome, *, error_type=None,
  message=None)``; :func:`mark_item`. Records ``batch.items`` (every attempt),
  ``batch.items.running``, ``batch.item.work`` (the item's seconds, ``duration_seconds`` for
  :func:`mark_item`) and ``batch.errors`` (by error type: an exception's qualified name, never
  its message).
- :func:`record_tokens` ``(*, input=0, output=0, model, cache_read=0, cost_usd=None)``: a
  ``batch.tokens`` span event on the innermost item, stage or batch, running totals on that
  span (``gen_ai.usage.input_tokens`` / ``output_tokens``) and the ``batch.tokens`` counter.
  ``input`` includes the ``cache_read`` tokens (OTel GenAI). Pass ``cost_usd`` only when the
  provider reported it; estimates from the pricing table are the exporter's job.
- :func:`propagate` ``(fn)`` and :class:`ContextThreadPoolExecutor`: carry the current batch,
  stage and item into threads.

Names of spans, attributes, instruments and their units live in :mod:`instrumentation.semconv`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from instrumentation._batch import Batch, batch
    from instrumentation._item import Item, item, mark_item
    from instrumentation._propagation import ContextThreadPoolExecutor, propagate
    from instrumentation._stage import stage, traced_stage
    from instrumentation._tokens import record_tokens

__all__ = [
    "Batch",
    "ContextThreadPoolExecutor",
    "Item",
    "batch",
    "item",
    "mark_item",
    "propagate",
    "record_tokens",
    "stage",
    "traced_stage",
]

# Where each name of the API lives. They are imported on first use: a program that reads only
# ``semconv`` or ``contract`` (the exporter's reports) does not load OpenTelemetry (~65 ms).
_HOMES = {
    "Batch": "_batch",
    "batch": "_batch",
    "Item": "_item",
    "item": "_item",
    "mark_item": "_item",
    "ContextThreadPoolExecutor": "_propagation",
    "propagate": "_propagation",
    "stage": "_stage",
    "traced_stage": "_stage",
    "record_tokens": "_tokens",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # once: later lookups find it here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
