"""configure() end to end: the real instrumentation into the archive, metrics, OTLP, no globals."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    Metric,
    NumberDataPoint,
)

from exporter.archive.files import read_record
from exporter.sdk.configure import ConfigurationError, Telemetry, configure
from instrumentation import (
    ContextThreadPoolExecutor,
    batch,
    contract,
    item,
    record_tokens,
    semconv,
    stage,
    traced_stage,
)


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def telemetry(tmp_path: Path, reader: InMemoryMetricReader) -> Iterator[Telemetry]:
    handle = configure(tmp_path / "archive", metric_readers=[reader], set_global=False, otlp=False)
    yield handle
    handle.shutdown()


def _metrics(reader: InMemoryMetricReader) -> dict[str, Metric]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }


def _open(telemetry: Telemetry, batch_id: str = "47", **kwargs: object):
    return batch(
        batch_id,
        "execute",
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        **kwargs,  # type: ignore[arg-type]
    )


@traced_stage(1, name="threads")
def _threaded_stage(ids: list[str]) -> list[str]:
    def work(item_id: str) -> str:
        with item(item_id) as it:
            record_tokens(input=1_000_000, output=100_000, model="claude-haiku-4-5")
            if item_id.endswith("2"):
                it.set_outcome("partial", error_type="Incomplete", message="half done")
        return item_id

    with ContextThreadPoolExecutor(max_workers=3) as pool:
        return list(pool.map(work, ids))


@traced_stage(2, name="asyncio")
async def _async_stage(ids: list[str]) -> None:
    async def work(item_id: str) -> None:
        with item(item_id):
            await asyncio.sleep(0)
            record_tokens(input=10, output=5, model="in-house", cost_usd=0.25)
            if item_id == "A-1":
                raise ValueError("bad input")

    await asyncio.gather(*(work(i) for i in ids), return_exceptions=True)


def test_threads_and_asyncio_land_in_one_record(
    telemetry: Telemetry, reader: InMemoryMetricReader
) -> None:
    with _open(telemetry, total_items=5) as run:
        assert _threaded_stage(["T-1", "T-2", "T-3"]) == ["T-1", "T-2", "T-3"]
        asyncio.run(_async_stage(["A-1", "A-2"]))
    (path,) = telemetry.processor.written
    assert path == telemetry.archive_dir / "batch-47-execute.json"
    record = read_record(path)
    assert record.run_id == run.run_id
    m = record.metrics
    assert (m.total_items, m.success_count, m.failure_count, m.partial_count) == (5, 3, 1, 1)
    assert [(s.stage, s.items) for s in m.stage_durations or []] == [
        (1, ["T-1", "T-2", "T-3"]),
        (2, ["A-1", "A-2"]),
    ]
    assert [(e.item_id, e.error_type, e.error_message) for e in m.errors or []] == [
        ("T-2", "Incomplete", "half done"),
        ("A-1", "ValueError", "bad input"),
    ]
    usage = m.token_usage
    assert usage is not None
    assert [(u.model, u.cost_usd, u.cost_source) for u in usage.by_model or []] == [
        ("claude-haiku-4-5", 4.5, "estimate"),  # 3 x (1M x $1 + 0.1M x $5)
        ("in-house", 0.5, "provider"),
    ]
    assert (usage.estimated_cost, usage.cost_source) == (5.0, "mixed")
    cost = _metrics(reader)[contract.COST.otel_name]
    points = {
        (p.attributes or {}).get(semconv.LABEL_MODEL): p.value
        for p in cost.data.data_points
        if isinstance(p, NumberDataPoint)
    }
    assert points == {"claude-haiku-4-5": 4.5, "in-house": 0.5}


def test_duration_histograms_have_the_project_buckets(
    telemetry: Telemetry, reader: InMemoryMetricReader
) -> None:
    with _open(telemetry), stage(1):
        pass
    metrics = _metrics(reader)
    for name in (contract.DURATION.otel_name, contract.STAGE_DURATION.otel_name):
        (point,) = metrics[name].data.data_points
        assert isinstance(point, HistogramDataPoint)
        assert tuple(point.explicit_bounds) == semconv.DURATION_BUCKETS
        assert 600.0 in point.explicit_bounds
        assert point.count == 1


def test_service_name_default_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    handle = configure(tmp_path, set_global=False, otlp=False)
    assert handle.tracer_provider.resource.attributes["service.name"] == "batch-metrics"
    handle.shutdown()
    monkeypatch.setenv("OTEL_SERVICE_NAME", "orchestrator")
    handle = configure(tmp_path, set_global=False, otlp=False)
    assert handle.tracer_provider.resource.attributes["service.name"] == "orchestrator"
    handle.shutdown()
    handle.shutdown()  # idempotent


def test_no_global_state_when_not_asked(tmp_path: Path) -> None:
    before = trace.get_tracer_provider()
    handle = configure(tmp_path, set_global=False, otlp=False)
    assert trace.get_tracer_provider() is before
    handle.shutdown()


def test_given_providers_are_extended_not_replaced(tmp_path: Path) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    tracer_provider = TracerProvider(shutdown_on_exit=False)
    meter_provider = MeterProvider(shutdown_on_exit=False)
    handle = configure(
        tmp_path,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        set_global=False,
        otlp=False,
    )
    assert (handle.tracer_provider, handle.meter_provider) == (tracer_provider, meter_provider)
    with _open(handle, "given"):
        pass
    assert read_record(tmp_path / "batch-given-execute.json").batch_id == "given"
    handle.shutdown()
    # the caller's providers stay usable: configure() did not create them, so it does not stop them
    assert tracer_provider.get_tracer("x").start_span("still-works").is_recording()
    with pytest.raises(ConfigurationError, match="metric_readers cannot be added"):
        configure(tmp_path, meter_provider=meter_provider, metric_readers=[InMemoryMetricReader()])


def test_unwritable_archive_never_breaks_the_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    handle = configure(blocker / "archive", set_global=False, otlp=False)
    with caplog.at_level(logging.WARNING, logger="exporter"):
        for n in range(2):
            with _open(handle, f"b{n}"):
                result = "batch code ran"
    assert result == "batch code ran"
    (error,) = [r for r in caplog.records if r.name == "exporter"]
    assert "batch 'b0' was not recorded: cannot write record to" in error.getMessage()
    handle.shutdown()


def test_otlp_without_the_extra_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'batch-metrics\[otlp\]'"):
        configure(tmp_path, otlp=True, set_global=False)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there once the socket is closed


def test_otlp_endpoint_down_does_not_block_the_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_TIMEOUT", "1000")
    handle = configure(tmp_path, set_global=False)  # otlp=None: on because the endpoint is set
    started = time.monotonic()
    with _open(handle, "otlp"), stage(1), item("x"):
        record_tokens(input=1, output=1, model="claude-haiku-4-5")
    batch_seconds = time.monotonic() - started
    assert batch_seconds < 1.0
    assert read_record(tmp_path / "batch-otlp-execute.json").metrics.success_count == 1
    started = time.monotonic()
    with caplog.at_level(logging.CRITICAL):
        handle.shutdown()
    assert time.monotonic() - started < 10.0


def test_cli_and_validate_do_not_import_the_sdk() -> None:
    code = (
        "import sys, exporter, exporter.cli.main, exporter.cli.validate\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk'))\n"
        "assert not loaded, loaded\n"
        "exporter.configure\n"
        "assert 'opentelemetry.sdk.trace' in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
