"""``configure()``: wire the OpenTelemetry SDK for batch-metrics, once, at the edge.

It builds (or extends) a TracerProvider with the :class:`ArchiveSpanProcessor`, which writes one
archive record per batch run, and a MeterProvider whose duration histograms use the project's
buckets (600 s included, up to 8 h). OTLP export is optional (the ``otlp`` extra) and driven by
the standard ``OTEL_*`` variables: it is on when ``otlp=True``, or when ``otlp`` is left as
None and ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or its ``_TRACES_`` form) is set. Spans go through a
BatchSpanProcessor and metrics through a PeriodicExportingMetricReader, both exporting in the
background with bounded timeouts, so a collector that is down never blocks a batch.

At start-up it also records, as ``crashed``, the batches of processes that died mid-run and
left an in-flight marker in the archive (:func:`exporter.archive.recovery.recover`; only the hidden
``.inflight/`` directory is looked at, so this costs nothing when there is none). A failure
there is logged and does not stop configure().
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from exporter.archive.files import DEFAULT_ARCHIVE, ArchiveError
from exporter.archive.pricing import PricingTable, load_pricing
from exporter.archive.recovery import recover
from exporter.sdk.processor import DEFAULT_CHECKPOINT_SECONDS, ArchiveSpanProcessor
from exporter.util.errors import UserError
from instrumentation import contract
from instrumentation import semconv as sc

__all__ = ["DEFAULT_SERVICE_NAME", "ConfigurationError", "Telemetry", "configure"]

DEFAULT_SERVICE_NAME: Final = "batch-metrics"
# Used when OTEL_EXPORTER_OTLP_TIMEOUT / OTEL_METRIC_EXPORT_TIMEOUT are not set: the SDK's own
# defaults (10 s per request with retries, 30 s per metric export) are long for a batch's exit.
_OTLP_TIMEOUT_SECONDS: Final = 5.0
_ENDPOINT_VARS: Final = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

logger: Final = logging.getLogger("exporter")


class ConfigurationError(Exception):
    """configure() was asked for something it cannot do (one line)."""


@dataclass(eq=False)
class Telemetry:
    """What :func:`configure` set up; call :meth:`shutdown` once the orchestrator is done."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    processor: ArchiveSpanProcessor
    _owned: tuple[TracerProvider | MeterProvider, ...] = ()
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _closed: bool = False

    @property
    def archive_dir(self) -> Path:
        return self.processor.archive_dir

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        """Export whatever the OTLP exporters still hold; True if done in time."""
        done = self.tracer_provider.force_flush(timeout_millis)
        return self.meter_provider.force_flush(timeout_millis) and done

    def shutdown(self) -> None:
        """Flush and stop the providers configure() created (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.processor.shutdown()
        for provider in self._owned:
            provider.shutdown()


def _otlp_wanted(otlp: bool | None) -> bool:
    if otlp is not None:
        return otlp
    return any(os.environ.get(name) for name in _ENDPOINT_VARS)


def _otlp_parts() -> tuple[BatchSpanProcessor, PeriodicExportingMetricReader]:
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # noqa: PLC0415
            OTLPMetricExporter,
        )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )
    except ImportError as exc:
        raise ConfigurationError(
            "OTLP export needs the 'otlp' extra: pip install 'batch-metrics[otlp]'"
        ) from exc
    timeout = None if os.environ.get("OTEL_EXPORTER_OTLP_TIMEOUT") else _OTLP_TIMEOUT_SECONDS
    metric_timeout_ms = (
        None if os.environ.get("OTEL_METRIC_EXPORT_TIMEOUT") else _OTLP_TIMEOUT_SECONDS * 1000
    )
    spans = BatchSpanProcessor(OTLPSpanExporter(timeout=timeout))
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(timeout=timeout), export_timeout_millis=metric_timeout_ms
    )
    return spans, reader


def _recover_quietly(archive: Path) -> None:
    """Record dead processes' batches; never fails configure() (the host must start)."""
    try:
        for action in recover(archive, temp_max_age=None):
            logger.warning("batch-metrics: %s", action)
    except (ArchiveError, OSError) as exc:
        logger.error("batch-metrics: crash recovery at start-up failed: %s", exc)
    except Exception:
        logger.exception("batch-metrics: crash recovery at start-up failed")


def _pricing_from_environment() -> PricingTable | None:
    """The built-in table merged with ``$BATCH_METRICS_PRICING``; a bad file is logged and the
    built-in table used (configure() must not stop the host program)."""
    try:
        return load_pricing()
    except UserError as exc:
        logger.error("batch-metrics: %s; using the built-in pricing table", exc)
        return None


def duration_views() -> list[View]:
    """Views giving the duration histograms the project's buckets, whatever the SDK default."""
    aggregation = ExplicitBucketHistogramAggregation(boundaries=sc.DURATION_BUCKETS)
    return [
        View(instrument_name=name, aggregation=aggregation)
        for name in (contract.DURATION.otel_name, contract.STAGE_DURATION.otel_name)
    ]


def configure(
    archive_dir: Path | str = DEFAULT_ARCHIVE,
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    metric_readers: Sequence[MetricReader] = (),
    otlp: bool | None = None,
    set_global: bool = True,
    pricing: PricingTable | None = None,
    checkpoint_interval: float | None = DEFAULT_CHECKPOINT_SECONDS,
    recover_crashed: bool = True,
) -> Telemetry:
    """Set up tracing and metrics so that every batch run lands in ``archive_dir``.

    Pass your own ``tracer_provider`` to add the archive processor to it, or your own
    ``meter_provider`` (then ``metric_readers`` must be empty: a MeterProvider's readers are
    fixed when it is built). With ``set_global`` the providers become OpenTelemetry's global
    ones, which ``instrumentation`` uses by default. ``checkpoint_interval`` is the minimum
    time between updates of a running batch's in-flight marker (None: no markers, no crash
    recovery); ``recover_crashed`` records dead processes' batches now. ``pricing`` defaults to
    the built-in table merged with ``$BATCH_METRICS_PRICING`` (a bad file is logged, not fatal).
    Raises ConfigurationError for OTLP without the ``otlp`` extra, or for readers given with a
    ready meter provider.
    """
    if meter_provider is not None and metric_readers:
        raise ConfigurationError("metric_readers cannot be added to a given meter_provider")
    otlp_spans, otlp_reader = _otlp_parts() if _otlp_wanted(otlp) else (None, None)
    resource = Resource.create(
        {SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME}
    )
    owned: list[TracerProvider | MeterProvider] = []
    if meter_provider is None:
        readers = [*metric_readers, *([otlp_reader] if otlp_reader is not None else [])]
        meter_provider = MeterProvider(
            metric_readers=readers, resource=resource, views=duration_views()
        )
        owned.append(meter_provider)
    elif otlp_reader is not None:
        raise ConfigurationError("OTLP metrics need configure() to build the meter provider")
    if tracer_provider is None:
        tracer_provider = TracerProvider(resource=resource)
        owned.append(tracer_provider)

    if recover_crashed:
        _recover_quietly(Path(archive_dir))
    processor = ArchiveSpanProcessor(
        archive_dir,
        meter_provider=meter_provider,
        pricing=pricing if pricing is not None else _pricing_from_environment(),
        checkpoint_interval=checkpoint_interval,
    )
    tracer_provider.add_span_processor(processor)
    if otlp_spans is not None:
        tracer_provider.add_span_processor(otlp_spans)
    if set_global:
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
    return Telemetry(tracer_provider, meter_provider, processor, tuple(owned))
