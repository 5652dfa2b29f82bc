"""``BATCH_METRICS_PRICING`` reaches instrumented batches; a bad file is logged, not fatal."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from exporter.archive.files import read_record
from exporter.sdk.configure import configure
from instrumentation import batch, item, record_tokens, stage


def _run_batch(archive: Path) -> Path:
    telemetry = configure(archive, set_global=False, otlp=False, checkpoint_interval=None)
    try:
        with (
            batch(
                "pricing-1",
                "execute",
                tracer_provider=telemetry.tracer_provider,
                meter_provider=telemetry.meter_provider,
            ),
            stage(1),
            item("PRP-1"),
        ):
            record_tokens(input=1_000_000, output=1_000_000, model="house-model-7")
    finally:
        telemetry.shutdown()
    (written,) = telemetry.processor.written
    return written


def test_the_pricing_override_prices_an_instrumented_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = tmp_path / "pricing.yaml"
    table.write_text(
        'as_of: "2026-12-01"\ncurrency: USD\nmodels:\n  house-model-7: {input: 2.0, output: 3.0}\n'
    )
    monkeypatch.setenv("BATCH_METRICS_PRICING", str(table))
    usage = read_record(_run_batch(tmp_path / "archive")).metrics.token_usage
    assert usage is not None
    assert (usage.estimated_cost, usage.unpriced_models) == (5.0, None)


def test_a_bad_pricing_file_is_logged_and_the_builtin_table_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("BATCH_METRICS_PRICING", str(tmp_path / "missing.yaml"))
    with caplog.at_level(logging.ERROR, logger="exporter"):
        path = _run_batch(tmp_path / "archive")
    assert "using the built-in pricing table" in caplog.text
    usage = read_record(path).metrics.token_usage
    assert usage is not None and usage.unpriced_models == ["house-model-7"]
