"""The in-process path: the OTel SDK's Prometheus reader, set up to match the archive exporter.

For a long-running Python orchestrator that already calls ``exporter.sdk.configure.configure``::

    registry = CollectorRegistry()
    telemetry = configure(metric_readers=[prometheus_reader(registry)])
    prometheus_client.start_http_server(9464, addr="127.0.0.1", registry=registry)

The instruments of ``instrumentation`` then appear under the design contract's names
(``batch.operation.duration`` in ``s`` -> ``batch_operation_duration_seconds``) with the same
labels and buckets as ``batch-metrics serve``, plus ``batch_operations_running`` and
``batch_items_running`` while batches run. Scope labels are turned off so that the label sets
equal the archive exporter's.
"""

from __future__ import annotations

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from prometheus_client import CollectorRegistry

__all__ = ["prometheus_reader"]


def prometheus_reader(registry: CollectorRegistry) -> PrometheusMetricReader:
    """A PrometheusMetricReader exposing into ``registry`` (never the global REGISTRY)."""
    return PrometheusMetricReader(scope_info_enabled=False, registry=registry)
