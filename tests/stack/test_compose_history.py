"""The compose stack's history path, run as its services run it, without Docker.

``docker compose up`` cannot run here (no Docker), but what decides whether the compose stack
loads history once and never counts a run twice is what its services execute, in the order
``depends_on`` gives, over the volumes they share: ``history`` (``backfill --missing
--output``), ``history-load`` (promtool's shell step) and ``exporter`` (``serve --live-only``).
This test reads those commands from docker-compose.yml, and the image's entry point and
``XDG_CACHE_HOME`` from the Dockerfile, and runs them natively: every container path is mapped
to a directory of the test's (a named volume, the ``.ce`` bind mount), the exporter listens on
loopback, and a real Prometheus opens the data volume, as the ``prometheus`` service does.
Two ``up``s: the second, after a run ended while the stack was down, loads only that run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.archive.files import write_record
from tests.support.records import rec
from tests.support.servers import (
    LOOPBACK,
    Server,
    prom_query,
    require_binary,
    running,
    start_prometheus,
    start_server,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text("utf-8"))
DOCKERFILE = (ROOT / "Dockerfile").read_text("utf-8")
HISTORY = "batch_operations_total{job='batch-metrics-history'}"
pytestmark = pytest.mark.integration


def _image_cache_home() -> str:
    """The exporter image's XDG_CACHE_HOME (where its index and ledger live)."""
    found = re.search(r"XDG_CACHE_HOME=(\S+)", DOCKERFILE)
    assert found, "the Dockerfile sets XDG_CACHE_HOME"
    return found.group(1)


def _entrypoint() -> list[str]:
    """The exporter image's ENTRYPOINT, as this test runs it (the clone's CLI)."""
    found = re.search(r'^ENTRYPOINT \["([^"]+)"\]$', DOCKERFILE, re.MULTILINE)
    assert found and found.group(1) == "batch-metrics"
    return [sys.executable, "-m", "exporter.cli"]


@dataclass(frozen=True)
class Host:
    """Where the containers' paths live on this machine."""

    ce: Path  # BATCH_METRICS_CE_DIR
    volumes: dict[str, Path]  # named volume -> directory
    cache_home: Path  # the image's XDG_CACHE_HOME
    bin: Path  # stand-ins for commands that only make sense inside a container

    def mounts(self, service: str) -> dict[str, Path]:
        """Container path -> host directory, for each volume of ``service`` (and the image's
        cache home for the exporter's image)."""
        mounts: dict[str, Path] = {}
        for volume in COMPOSE["services"][service]["volumes"]:
            if isinstance(volume, str):
                name, target = volume.split(":", 1)
                mounts[target] = self.volumes[name]
            else:
                assert volume["type"] == "bind"
                assert volume["source"].startswith("${BATCH_METRICS_CE_DIR")
                mounts[volume["target"]] = self.ce
        if COMPOSE["services"][service].get("image", "").startswith("batch-metrics-exporter"):
            mounts[_image_cache_home()] = self.cache_home
        return mounts

    def path(self, service: str, text: str) -> str:
        """``text`` with every container path of ``service`` replaced by its host directory."""
        mounts = self.mounts(service)
        for target in sorted(mounts, key=len, reverse=True):
            # a whole path or its start: not inside another path (/history/history.om)
            text = re.sub(rf"(?<![\w./-]){re.escape(target)}(?=/|\s|$)", str(mounts[target]), text)
        return text

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BATCH_METRICS_")}
        env["XDG_CACHE_HOME"] = str(self.cache_home)
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        return env


@pytest.fixture
def host(tmp_path: Path) -> Host:
    cache_home = tmp_path / "image-cache"
    # The exporter's cache volume is mounted at <XDG_CACHE_HOME>/batch-metrics in its image.
    (cache_home / "batch-metrics").mkdir(parents=True)
    volumes = {
        "exporter-cache": cache_home / "batch-metrics",
        "prometheus-data": tmp_path / "prometheus-data",
    }
    volumes["prometheus-data"].mkdir()
    shims = tmp_path / "bin"
    shims.mkdir()
    # history-load hands files to the containers' users (nobody, 10001): no such thing here.
    (shims / "chown").write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    (shims / "chown").chmod(0o755)
    ce = tmp_path / "ce"
    (ce / "completed-batches").mkdir(parents=True)
    return Host(ce, volumes, cache_home, shims)


def _volume_of(host: Host, service: str, target: str) -> Path:
    return host.mounts(service)[target]


def run_once(host: Host, service: str) -> None:
    """Run a one-shot service (``restart: "no"``) to completion, as compose does."""
    spec = COMPOSE["services"][service]
    assert spec["restart"] == "no"
    command = [host.path(service, part) for part in spec["command"]]
    argv = [*spec["entrypoint"], *command] if "entrypoint" in spec else [*_entrypoint(), *command]
    done = subprocess.run(
        argv, env=host.env(), capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"{service}: {done.stderr[-2000:]}"


@pytest.fixture
def exporter_up(host: Host, tmp_path: Path) -> Iterator[Any]:
    """A function that starts the ``exporter`` service (stopped at the test's end)."""
    started: list[Server] = []

    def up() -> Server:
        spec = COMPOSE["services"]["exporter"]
        command = [host.path("exporter", part) for part in spec["command"]]
        assert "--bind=0.0.0.0" in command and "--live-only" in command
        command.remove("--bind=0.0.0.0")  # loopback only in tests
        server = start_server(
            "exporter",
            lambda port: [
                *_entrypoint(),
                *[p for p in command if not p.startswith("--port=")],
                f"--bind={LOOPBACK}",
                f"--port={port}",
            ],
            tmp_path / f"exporter-{len(started)}",
            ready_path="/health",
            env=host.env(),
        )
        started.append(server)
        return server

    try:
        yield up
    finally:
        for server in started:
            server.stop()


def _prometheus(host: Host, exporter: Server, workdir: Path) -> Server:
    """Prometheus on the data volume, scraping the exporter every second."""
    config = workdir / "prometheus.yml"
    workdir.mkdir(parents=True, exist_ok=True)
    target = exporter.url.removeprefix("http://")
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s"},
                "scrape_configs": [
                    {"job_name": "batch-metrics", "static_configs": [{"targets": [target]}]}
                ],
            }
        ),
        encoding="utf-8",
    )
    storage = _volume_of(host, "history-load", "/prometheus")
    return start_prometheus(config, workdir, storage=storage)


def _total(server: Server, expr: str) -> float:
    result = prom_query(server, f"sum({expr})")
    return float(result[0]["value"][1]) if result else 0.0


def _live(exporter: Server, name: str) -> str:
    """``name`` as scraped from ``exporter`` (an earlier exporter's series share the volume)."""
    return f"{name}{{job='batch-metrics', instance='{exporter.url.removeprefix('http://')}'}}"


def _ended(archive: Path, batch: str, seconds_ago: float) -> None:
    """A run of 60 s that ended ``seconds_ago``."""
    start = datetime.fromtimestamp(time.time() - seconds_ago - 60.0, UTC)
    write_record(archive, rec(batch, duration=60.0, start=start))


def test_two_compose_ups_load_each_past_run_once_and_count_live_runs_live(
    host: Host, exporter_up: Any, tmp_path: Path
) -> None:
    require_binary("promtool")
    archive = host.ce / "completed-batches"
    for n in range(6):  # ended 5 to 10 hours before the first start: history
        _ended(archive, f"past-{n}", (5 + n) * 3600.0)
    history_file = _volume_of(host, "history", "/var/cache/batch-metrics") / "history.om"

    # -- the first `docker compose up`: history, then its load, then the exporter
    run_once(host, "history")
    assert history_file.is_file()
    run_once(host, "history-load")
    loaded = Path(f"{history_file}.loaded").read_text("utf-8")
    assert loaded == Path(f"{history_file}.id").read_text("utf-8")  # the load was confirmed
    exporter = exporter_up()
    with running(_prometheus(host, exporter, tmp_path / "prometheus-1")) as prometheus:
        assert _total(prometheus, f"last_over_time({HISTORY}[1d])") == 6.0
        wait_until(
            lambda: _total(prometheus, _live(exporter, "batch_metrics_exporter_records")) == 6,
            timeout=30,
            what="the exporter's first scrape",
        )
        assert _total(prometheus, _live(exporter, "batch_operations_total")) == 0.0
        _ended(archive, "live-1", 1.0)  # ends now, while the stack runs: counted live
        wait_until(
            lambda: _total(prometheus, _live(exporter, "batch_operations_total")) == 1.0,
            timeout=30,
            what="the live run counted by the exporter",
        )
    exporter.stop()

    # -- down; a run that ended before the first start arrives late; up again
    _ended(archive, "late-1", 6 * 3600.0)
    run_once(host, "history")
    run_once(host, "history-load")
    exporter = exporter_up()
    with running(_prometheus(host, exporter, tmp_path / "prometheus-2")) as prometheus:
        # each past run once, over both loads (each load has its own `backfill` label)
        assert _total(prometheus, f"last_over_time({HISTORY}[1d])") == 7.0
        loads = prom_query(prometheus, f"count by (backfill) (last_over_time({HISTORY}[1d]))")
        assert len(loads) == 2
        wait_until(
            lambda: _total(prometheus, _live(exporter, "batch_metrics_exporter_records")) == 8,
            timeout=30,
            what="the restarted exporter's first scrape",
        )
        # the live run stays counted (from the ledger), the late one is history only
        assert _total(prometheus, _live(exporter, "batch_operations_total")) == 1.0

    # -- a third up with nothing new: nothing to load, and the load step does nothing
    run_once(host, "history")
    assert not history_file.exists()
    run_once(host, "history-load")
