"""Never break the host: with the real instrumentation and configure(), a read-only or full
archive, an exporter that raises, and an OTLP endpoint that is down or hangs leave the decorated
code's results, exceptions and timing unchanged, and each failure is logged once."""

from __future__ import annotations

import errno
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.archive.files import ArchiveError, list_record_files, read_record
from exporter.archive.recovery import INFLIGHT_DIR, read_marker, recover
from exporter.sdk import processor as processor_module
from exporter.sdk.configure import Telemetry, configure
from instrumentation import batch, item, traced_stage

OWN_SECONDS = 0.05  # what the decorated code itself takes per batch (its own work)
# A batch may take this much longer than its own work: the archive write (one small fsynced
# file) and the span bookkeeping, with room for a slow CI disk. OTLP adds nothing: it exports
# in the background (docs/guarantees.md, "Bounded time").
SLACK_SECONDS = 0.5


class OrchestratorError(Exception):
    """The host's own exception, which must come out unchanged."""


def _host_code(handle: Telemetry, batch_id: str, fail: bool = False) -> str:
    """What an orchestrator does: a batch with a decorated stage of items."""

    @traced_stage(1, name="work")
    def work() -> str:
        with item("PRP-1"):
            time.sleep(OWN_SECONDS)  # the stage's own work
        if fail:
            raise OrchestratorError(batch_id)
        return f"result of {batch_id}"

    with batch(
        batch_id,
        "execute",
        total_items=1,
        tracer_provider=handle.tracer_provider,
        meter_provider=handle.meter_provider,
    ):
        return work()


def _run_batches(handle: Telemetry) -> tuple[list[str], OrchestratorError, float]:
    """Three batches, the second of which raises; their results, its exception, the worst time."""
    results, worst, raised = [], 0.0, None
    for n, fail in enumerate((False, True, False)):
        started = time.perf_counter()
        try:
            results.append(_host_code(handle, f"b{n}", fail=fail))
        except OrchestratorError as exc:
            raised = exc
        worst = max(worst, time.perf_counter() - started)
    assert raised is not None
    return results, raised, worst


def _problems(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def _assert_host_unharmed(results: list[str], raised: OrchestratorError, worst: float) -> None:
    assert results == ["result of b0", "result of b2"]
    assert type(raised) is OrchestratorError and raised.args == ("b1",)
    assert worst < OWN_SECONDS + SLACK_SECONDS


@pytest.fixture
def handle(tmp_path: Path) -> Iterator[Telemetry]:
    telemetry = configure(tmp_path / "archive", set_global=False, otlp=False)
    yield telemetry
    telemetry.shutdown()


def _deny_writes_under(monkeypatch: pytest.MonkeyPatch, root: Path, code: int) -> None:
    """Make every write under ``root`` fail with ``code``, as a read-only mount would."""
    real_open, real_mkdir = os.open, os.mkdir
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def guarded_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(path).startswith(str(root)) and flags & writing:
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    def guarded_mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
        if str(path).startswith(str(root)):
            raise OSError(code, os.strerror(code), str(path))
        real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded_open)
    monkeypatch.setattr(os, "mkdir", guarded_mkdir)


def test_read_only_archive(
    handle: Telemetry, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    archive = handle.archive_dir
    archive.mkdir(parents=True)
    _deny_writes_under(monkeypatch, archive, errno.EROFS)
    with caplog.at_level(logging.DEBUG, logger="exporter"):
        results, raised, worst = _run_batches(handle)
    _assert_host_unharmed(results, raised, worst)
    (problem,) = _problems(caplog)
    assert problem.startswith(
        f"batch 'b0' was not recorded: cannot write record to {archive}: Read-only file system"
    )
    assert list(archive.iterdir()) == []


def test_full_disk(
    handle: Telemetry, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", no_space)
    with caplog.at_level(logging.DEBUG, logger="exporter"):
        results, raised, worst = _run_batches(handle)
    _assert_host_unharmed(results, raised, worst)
    (problem,) = _problems(caplog)
    assert problem.startswith(
        f"batch 'b0' was not recorded: cannot write record to {handle.archive_dir}: "
        "No space left on device"
    )
    assert list(handle.archive_dir.iterdir()) == []  # no temp file, no marker left behind
    # Space again: the next batch is recorded; the host never noticed.
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert _host_code(handle, "b3") == "result of b3"
    assert [p.name for p in list_record_files(handle.archive_dir)] == ["batch-b3-execute.json"]


def test_record_refused_at_the_end_is_kept_for_recover(
    handle: Telemetry, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The disk fills during the batch: the start marker exists, the record cannot be written."""

    def full(archive: Path, record: object) -> Path:
        raise ArchiveError(f"cannot write record to {archive}: No space left on device")

    monkeypatch.setattr(processor_module, "write_record", full)
    with caplog.at_level(logging.WARNING, logger="exporter"):
        assert _host_code(handle, "b0") == "result of b0"
    (marker_path,) = (handle.archive_dir / INFLIGHT_DIR).iterdir()
    (problem,) = _problems(caplog)
    assert problem.startswith(
        f"batch 'b0' was not recorded: cannot write record to {handle.archive_dir}: "
        f"No space left on device; kept in {marker_path} for 'batch-metrics recover'"
    )
    marker = read_marker(marker_path)
    assert marker.complete is True
    monkeypatch.undo()
    (action,) = recover(handle.archive_dir)
    assert action.kind == "recovered"
    record = read_record(handle.archive_dir / "batch-b0-execute.json")
    assert record == marker.record
    assert (record.status, record.metrics.success_count) == ("completed", 1)


def test_exporter_that_raises(
    handle: Telemetry, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> Path:
        raise RuntimeError("exporter bug")

    monkeypatch.setattr(processor_module, "write_record", broken)
    with caplog.at_level(logging.DEBUG, logger="exporter"):
        results, raised, worst = _run_batches(handle)
    _assert_host_unharmed(results, raised, worst)
    (problem,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert problem.getMessage().startswith("batch-metrics exporter failed on span end")
    assert problem.exc_info is not None and str(problem.exc_info[1]) == "exporter bug"
    assert sum(1 for r in caplog.records if r.levelno == logging.DEBUG) == 2


# -- OTLP endpoints that are down or hang --------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there once the socket is closed


@pytest.fixture
def hanging_port() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


OTLP_TIMEOUT = 1.0  # seconds, per export request (OTEL_EXPORTER_OTLP_TIMEOUT)


def _otlp_handle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, port: int) -> Telemetry:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", str(OTLP_TIMEOUT))
    monkeypatch.setenv("OTEL_METRIC_EXPORT_TIMEOUT", str(int(OTLP_TIMEOUT * 1000)))
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "10")  # export spans at once: while we run
    return configure(tmp_path / "archive", set_global=False)


@pytest.mark.parametrize("endpoint", ["down", "hanging"])
def test_otlp_endpoint_down_or_hanging(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    hanging_port: int,
    endpoint: str,
) -> None:
    port = hanging_port if endpoint == "hanging" else _closed_port()
    otlp = _otlp_handle(tmp_path, monkeypatch, port)
    with caplog.at_level(logging.WARNING):
        results, raised, worst = _run_batches(otlp)
        _assert_host_unharmed(results, raised, worst)
        started = time.perf_counter()
        otlp.shutdown()
        shutdown_seconds = time.perf_counter() - started
    # Shutdown flushes spans, then metrics, each export bounded by the OTLP timeout.
    assert shutdown_seconds < 2 * OTLP_TIMEOUT + SLACK_SECONDS * 4
    names = [p.name for p in list_record_files(tmp_path / "archive")]
    assert names == ["batch-b0-execute.json", "batch-b1-execute.json", "batch-b2-execute.json"]
    ours = [r for r in caplog.records if r.name.startswith(("exporter", "instrumentation"))]
    assert ours == []
    otlp_errors = [r for r in caplog.records if r.name.startswith("opentelemetry")]
    # The OTel SDK's exporters report each failed export themselves (docs/guarantees.md).
    assert otlp_errors, "the failed export is reported by the OTLP exporter"
    assert all(r.name.startswith("opentelemetry.exporter.otlp") for r in otlp_errors)
