"""The metric contract: one declaration per metric, and every view derives the same names."""

from __future__ import annotations

import contextlib

from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry

from exporter.prometheus.inprocess import prometheus_reader
from exporter.prometheus.series import FAMILIES
from instrumentation import batch, contract, item, record_tokens, stage

# The design contract's table (shared/design.md), name by name.
DESIGN_TABLE = {
    "batch_operation_duration_seconds": ("histogram", ("operation", "outcome")),
    "batch_operations_total": ("counter", ("operation", "outcome")),
    "batch_items_total": ("counter", ("operation", "outcome")),
    "batch_stage_duration_seconds": ("histogram", ("operation", "stage")),
    "batch_tokens_total": ("counter", ("operation", "type", "model")),
    "batch_cost_usd_total": ("counter", ("operation", "model")),
    "batch_errors_total": ("counter", ("operation", "error_type")),
    "batch_last_completion_timestamp_seconds": ("gauge", ("operation", "outcome")),
    "batch_last_success_timestamp_seconds": ("gauge", ("operation",)),
}


def test_the_contract_holds_the_design_table() -> None:
    declared = {m.prometheus_name: (m.kind, m.labels) for m in contract.METRICS}
    assert {name: declared[name] for name in DESIGN_TABLE} == DESIGN_TABLE


def test_names_are_unique_and_labels_bounded() -> None:
    names = [m.prometheus_name for m in contract.METRICS]
    assert len(names) == len(set(names))
    for m in contract.METRICS:
        assert set(m.values) <= set(m.labels), m.otel_name
        assert not {"batch_id", "item_id", "message"} & set(m.labels) or m.kind == "gauge"


def test_the_sdk_exporter_derives_the_contract_names() -> None:
    """What the OTel SDK's Prometheus exporter calls our instruments is what the contract says."""
    registry = CollectorRegistry()
    provider = MeterProvider(metric_readers=[prometheus_reader(registry)])
    try:
        with batch("1", "execute", meter_provider=provider), stage(1), item("a"):
            record_tokens(input=10, output=5, cache_read=2, model="m")
        failing = batch("2", "execute", meter_provider=provider)
        with failing, contextlib.suppress(ValueError), item("b"):
            raise ValueError("x")
        # target_info describes the resource, not a metric of ours
        exposed = {metric.name for metric in registry.collect()} - {"target"}
    finally:
        provider.shutdown()
    emitted = {
        contract.DURATION,
        contract.STAGE_DURATION,
        contract.OPERATIONS,
        contract.ITEMS,
        contract.ITEM_WORK,
        contract.TOKENS,
        contract.ERRORS,
        contract.LAST_COMPLETION,
        contract.LAST_SUCCESS,
        contract.OPERATIONS_RUNNING,
        contract.ITEMS_RUNNING,
    }
    # prometheus_client names counter families without their _total
    assert exposed == {m.prometheus_base for m in emitted}


def test_the_archive_families_are_the_contract_metrics() -> None:
    by_name = {m.prometheus_base: m for m in contract.METRICS}
    for family in FAMILIES:
        spec = by_name[family.name]
        assert (family.kind, family.help, family.labels) == (spec.kind, spec.help, spec.labels)
