"""Heartbeats: naive timestamps are UTC, and a task past the abandon age is abandoned, not
stalled forever (issue 10)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from exporter.prometheus.live import HeartbeatCollector
from exporter.signals.thresholds import ENV_VAR

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def write_heartbeat(orchestration: Path, batch: str, task: str, **fields: object) -> None:
    directory = orchestration / "tasks" / f"batch-{batch}"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{task}.hb").write_text(json.dumps(fields), encoding="utf-8")


def scraped(collector: HeartbeatCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The exporter runs in a zone far from UTC (as a container configured by hand might)."""
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("far_from_utc")
def test_a_last_update_without_offset_is_utc(tmp_path: Path) -> None:
    orch = tmp_path / "orch"
    write_heartbeat(orch, "47", "task-1", status="running", last_update="2027-01-15T07:59:00")
    write_heartbeat(orch, "47", "task-2", status="running", last_update="2027-01-15T07:59:30Z")
    registry = scraped(HeartbeatCollector(orch, clock=lambda: NOW, abandon_after=3600))
    age = "batch_task_heartbeat_age_seconds"
    assert registry.get_sample_value(age, {"batch_id": "47", "task": "task-1"}) == 60.0
    assert registry.get_sample_value(age, {"batch_id": "47", "task": "task-2"}) == 30.0


def test_a_heartbeat_past_the_abandon_age_is_abandoned_not_running(tmp_path: Path) -> None:
    orch = tmp_path / "orch"
    write_heartbeat(orch, "47", "task-1", status="running", last_update=NOW - 90)
    write_heartbeat(orch, "47", "task-2", status="running", last_update=NOW - 3601)
    write_heartbeat(orch, "47", "task-3", status="running", last_update=NOW - 86400 * 9)
    write_heartbeat(orch, "48", "task-1", status="running", last_update=NOW - 7200)
    registry = scraped(HeartbeatCollector(orch, clock=lambda: NOW, abandon_after=3600))
    age = "batch_task_heartbeat_age_seconds"
    assert registry.get_sample_value(age, {"batch_id": "47", "task": "task-1"}) == 90.0
    for batch, task in (("47", "task-2"), ("47", "task-3"), ("48", "task-1")):
        assert registry.get_sample_value(age, {"batch_id": batch, "task": task}) is None
    assert registry.get_sample_value("batch_tasks_running", {"batch_id": "47"}) == 1.0
    assert registry.get_sample_value("batch_tasks_running", {"batch_id": "48"}) is None
    assert registry.get_sample_value("batch_tasks_abandoned", {"batch_id": "47"}) == 2.0
    assert registry.get_sample_value("batch_tasks_abandoned", {"batch_id": "48"}) == 1.0


def test_the_abandon_age_comes_from_the_thresholds_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packaged = Path(__file__).resolve().parents[2] / "exporter" / "data" / "thresholds.yaml"
    thresholds = yaml.safe_load(packaged.read_text(encoding="utf-8"))
    thresholds["abandoned_heartbeat_seconds"] = 120
    override = tmp_path / "thresholds.yaml"
    override.write_text(yaml.safe_dump(thresholds), encoding="utf-8")
    monkeypatch.setenv(ENV_VAR, str(override))
    orch = tmp_path / "orch"
    write_heartbeat(orch, "47", "task-1", status="running", last_update=NOW - 90)
    write_heartbeat(orch, "47", "task-2", status="running", last_update=NOW - 121)
    collector = HeartbeatCollector(orch, clock=lambda: NOW)
    assert collector.abandon_after == 120
    registry = scraped(collector)
    assert registry.get_sample_value("batch_tasks_running", {"batch_id": "47"}) == 1.0
    assert registry.get_sample_value("batch_tasks_abandoned", {"batch_id": "47"}) == 1.0
