"""The stack's own server configs pass their tools' checks and agree with docker-compose.yml."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support.servers import require_binary

ROOT = Path(__file__).resolve().parents[2]


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_promtool_accepts_prometheus_yml_and_its_rules() -> None:
    result = run(
        require_binary("promtool"), "check", "config", str(ROOT / "prometheus/prometheus.yml")
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rules = sorted((ROOT / "prometheus/rules").glob("*.rules.yml"))
    assert rules
    assert f"SUCCESS: {len(rules)} rule files found" in result.stdout


def test_amtool_accepts_alertmanager_yml_and_rejects_a_broken_one(tmp_path: Path) -> None:
    amtool = require_binary("amtool")
    config = ROOT / "alertmanager/alertmanager.yml"
    result = run(amtool, "check-config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    broken = load(config)
    broken["route"]["receiver"] = "nobody"
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(broken))
    rejected = run(amtool, "check-config", str(path))
    assert rejected.returncode != 0
    assert 'undefined receiver "nobody"' in rejected.stdout + rejected.stderr


def test_every_alert_routes_to_the_user_configurable_receiver() -> None:
    config = load(ROOT / "alertmanager/alertmanager.yml")
    receivers = {r["name"] for r in config["receivers"]}
    # the user's channel, a quiet one for info alerts, a dead man's switch for the watchdog
    assert receivers == {"batch-metrics", "batch-metrics-info", "watchdog"}
    assert config["route"]["receiver"] == "batch-metrics"
    assert config["route"]["group_by"][:2] == ["alertname", "operation"]


def compose_service_ports() -> dict[str, int]:
    """Port each service listens on inside the compose network (its container port)."""
    services = load(ROOT / "docker-compose.yml")["services"]
    ports: dict[str, int] = {}
    for name, service in services.items():
        for mapping in service.get("ports", []):
            ports.setdefault(name, int(str(mapping).rsplit(":", 1)[1]))
    return ports


def test_prometheus_targets_are_compose_services_on_their_ports() -> None:
    config = load(ROOT / "prometheus/prometheus.yml")
    ports = compose_service_ports()
    targets = [
        t
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for t in static["targets"]
    ] + [
        t
        for am in config["alerting"]["alertmanagers"]
        for static in am["static_configs"]
        for t in static["targets"]
    ]
    for target in targets:
        host, port = target.rsplit(":", 1)
        service = "prometheus" if host == "localhost" else host
        assert ports[service] == int(port), target
    assert {t.rsplit(":", 1)[0] for t in targets} == {
        "exporter",
        "pushgateway",
        "alertmanager",
        "localhost",
    }


def test_exporter_serves_on_the_port_prometheus_scrapes() -> None:
    compose = load(ROOT / "docker-compose.yml")["services"]["exporter"]
    assert "--port=9477" in compose["command"]
    assert compose_service_ports()["exporter"] == 9477
    assert re.search(r"^EXPOSE 9477$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)


def test_collector_pipeline_sends_traces_to_tempo() -> None:
    collector = load(ROOT / "otel-collector/config.yaml")
    (pipeline,) = collector["service"]["pipelines"].values()
    for kind in ("receivers", "processors", "exporters"):
        assert set(pipeline[kind]) <= set(collector[kind]), kind
    assert list(collector["service"]["pipelines"]) == ["traces"]  # metrics come from serve
    (exporter,) = pipeline["exporters"]
    tempo = load(ROOT / "tempo/tempo.yaml")
    tempo_grpc = tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert collector["exporters"][exporter]["endpoint"] == "tempo:" + tempo_grpc.rsplit(":", 1)[1]
    assert compose_service_ports()["tempo"] == tempo["server"]["http_listen_port"]
    # Tempo keeps its data in the named volume compose mounts at /var/tempo.
    paths = {tempo["storage"]["trace"]["wal"]["path"], tempo["storage"]["trace"]["local"]["path"]}
    assert paths == {"/var/tempo/wal", "/var/tempo/blocks"}
    volumes = load(ROOT / "docker-compose.yml")["services"]["tempo"]["volumes"]
    assert "tempo-data:/var/tempo" in volumes
