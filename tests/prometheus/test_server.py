"""``serve``: HTTP endpoints, content negotiation, live heartbeats, and the CLI process itself."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from exporter.archive.files import write_record
from exporter.cli.main import main
from exporter.index.store import ArchiveIndex
from exporter.prometheus.live import HeartbeatCollector, scan_running_tasks
from exporter.prometheus.server import MetricsServer, build_registry
from tests.support.records import rec
from tests.support.servers import http_get, wait_until

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[MetricsServer, Path, Path]]:
    archive = tmp_path / "archive"
    orchestration = tmp_path / "orchestration"
    write_record(archive, rec("1"))
    index = ArchiveIndex(archive, db_path=tmp_path / "index.db")
    registry, collector = build_registry(index, orchestration)
    server = MetricsServer.start(registry, collector, port=0, rescan_interval=3600)
    try:
        yield server, archive, orchestration
    finally:
        server.stop()
        index.close()


def get(url: str, accept: str | None = None) -> tuple[int, str, str]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_metrics_text_and_openmetrics(served: tuple[MetricsServer, Path, Path]) -> None:
    server, _, _ = served
    status, ctype, body = get(server.url + "/metrics")
    assert status == 200
    assert ctype.startswith("text/plain; version=0.0.4")
    assert 'batch_operations_total{operation="execute",outcome="partial"} 1.0\n' in body
    status, ctype, body = get(
        server.url + "/metrics", "application/openmetrics-text; version=1.0.0"
    )
    assert status == 200
    assert ctype.startswith("application/openmetrics-text; version=1.0.0")
    assert "# TYPE batch_operations counter\n" in body
    assert 'batch_operations_total{operation="execute",outcome="partial"} 1.0\n' in body
    assert body.endswith("# EOF\n")


def test_health_landing_and_404(served: tuple[MetricsServer, Path, Path]) -> None:
    server, archive, _ = served
    status, ctype, body = get(server.url + "/health")
    assert (status, ctype) == (200, "application/json")
    health = json.loads(body)
    assert (health["status"], health["records"], health["invalid_records"]) == ("ok", 1, 0)
    status, ctype, body = get(server.url + "/")
    assert status == 200
    assert ctype == "text/html; charset=utf-8"
    assert '<a href="/metrics">' in body
    assert str(archive) in body
    assert get(server.url + "/nope")[0] == 404


def test_new_record_visible_at_next_scrape(served: tuple[MetricsServer, Path, Path]) -> None:
    server, archive, _ = served
    write_record(archive, rec("2", start=datetime(2026, 3, 4, tzinfo=UTC)))
    body = get(server.url + "/metrics")[2]
    assert 'batch_operations_total{operation="execute",outcome="partial"} 2.0\n' in body


def test_invalid_file_never_fails_a_scrape(served: tuple[MetricsServer, Path, Path]) -> None:
    server, archive, _ = served
    (archive / "batch-x-review.json").write_bytes(b"\xff\xfe garbage")
    (archive / "batch-y-review.json").write_text('{"batch_id": "../etc"}', encoding="utf-8")
    status, _, body = get(server.url + "/metrics")
    assert status == 200
    assert "batch_metrics_exporter_invalid_records 2.0\n" in body
    assert 'batch_operations_total{operation="execute",outcome="partial"} 1.0\n' in body


def write_heartbeat(orchestration: Path, batch: str, task: str, **fields: object) -> Path:
    directory = orchestration / "tasks" / f"batch-{batch}"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{task}.hb"
    path.write_text(json.dumps(fields), encoding="utf-8")
    return path


def test_heartbeats_running_tasks_only(tmp_path: Path) -> None:
    orch = tmp_path / "orch"
    now = 1_800_000_000.0
    write_heartbeat(
        orch,
        "47",
        "task-1",
        status="running",
        progress=0.5,
        last_update="2027-01-15T08:00:00+00:00",
    )
    write_heartbeat(orch, "47", "task-2", status="in_progress", last_update=now - 90)
    write_heartbeat(orch, "47", "task-3", status="completed", last_update=now - 500)
    done = write_heartbeat(orch, "47", "task-4", status="running", last_update=now - 500)
    done.with_name("task-4.result.json").write_text("{}", encoding="utf-8")
    write_heartbeat(orch, "48", "task-1", status="running", last_update=now - 1000)
    (orch / "batches").mkdir()
    (orch / "batches" / "batch-48.result.json").write_text("{}", encoding="utf-8")  # batch over
    (orch / "tasks" / "batch-47" / "task-5.hb").write_text("{torn", encoding="utf-8")

    tasks = scan_running_tasks(orch)
    assert [(t.batch_id, t.task) for t in tasks] == [("47", "task-1"), ("47", "task-2")]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HeartbeatCollector(orch, clock=lambda: now))
    t1 = datetime(2027, 1, 15, 8, tzinfo=UTC).timestamp()
    age = "batch_task_heartbeat_age_seconds"
    assert registry.get_sample_value(age, {"batch_id": "47", "task": "task-1"}) == now - t1
    assert registry.get_sample_value(age, {"batch_id": "47", "task": "task-2"}) == 90.0
    assert registry.get_sample_value(age, {"batch_id": "47", "task": "task-3"}) is None
    assert registry.get_sample_value(age, {"batch_id": "48", "task": "task-1"}) is None
    assert registry.get_sample_value("batch_tasks_running", {"batch_id": "47"}) == 2.0
    assert (
        registry.get_sample_value("batch_task_progress", {"batch_id": "47", "task": "task-1"})
        == 0.5
    )


def test_heartbeat_without_last_update_uses_file_mtime(tmp_path: Path) -> None:
    orch = tmp_path / "orch"
    path = write_heartbeat(orch, "7", "task-1", status="running")
    os.utime(path, (1_700_000_000, 1_700_000_000))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HeartbeatCollector(orch, clock=lambda: 1_700_000_042.0))
    labels = {"batch_id": "7", "task": "task-1"}
    assert registry.get_sample_value("batch_task_heartbeat_age_seconds", labels) == 42.0


def test_serve_cli_process(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    write_record(archive, rec("1"))
    env = {**os.environ, "BATCH_METRICS_INDEX": str(tmp_path / "index.db")}
    process = subprocess.Popen(
        [sys.executable, "-m", "exporter.cli", "serve", "--archive", str(archive), "--port", "0"],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        found = re.search(r"on (http://127\.0\.0\.1:\d+)/metrics", line)
        assert found, line
        assert "serving 1 records" in line
        url = found.group(1)
        status, body = http_get(url + "/metrics")
        assert status == 200
        families = {f.name for f in text_string_to_metric_families(body.decode())}
        assert {
            "batch_operations",
            "batch_operation_duration_seconds",
            "batch_tasks_running",
        } <= families
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        wait_until(lambda: process.poll() is not None or time.monotonic() > deadline, timeout=15)
        assert process.returncode == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--port", "70000"], "port 70000 is outside 0..65535"),
        (["serve", "--rescan-interval", "0"], "seconds must be positive and finite"),
        (["backfill", "--label", "le=1"], "label 'le' is one of the metrics' own labels"),
    ],
)
def test_bad_options_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_serve_archive_not_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    not_dir = tmp_path / "file"
    not_dir.write_text("x", encoding="utf-8")
    assert main(["serve", "--archive", str(not_dir), "--port", "0"]) == 2
    assert (
        capsys.readouterr().err == f"batch-metrics: error: archive {not_dir} is not a directory\n"
    )


def test_serve_port_in_use(
    tmp_path: Path, served: tuple[MetricsServer, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    server, archive, _ = served
    assert main(["serve", "--archive", str(archive), "--port", str(server.port)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"batch-metrics: error: cannot listen on 127.0.0.1:{server.port}: ")
    assert err.endswith(" (choose another with --port)\n")
    assert err.count("\n") == 1


def test_a_port_in_use_fails_before_the_archive_is_loaded(
    tmp_path: Path, served: tuple[MetricsServer, Path, Path]
) -> None:
    """A large archive takes seconds to load: a busy port must not be learnt only after."""
    busy, archive, _ = served
    index = ArchiveIndex(archive, db_path=tmp_path / "other.db")
    registry, collector = build_registry(index)
    loads: list[object] = []
    collector.update = lambda **_: loads.append(1)  # type: ignore[assignment,method-assign]
    try:
        with pytest.raises(OSError):
            MetricsServer.start(registry, collector, port=busy.port, rescan_interval=3600)
        assert loads == []
        free = MetricsServer.start(registry, collector, port=0, rescan_interval=3600)
        free.stop()
        assert loads == [1]
    finally:
        index.close()
