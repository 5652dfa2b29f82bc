"""The generated rule file: up to date, valid for promtool, and its unit tests pass."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from exporter.cli.main import main
from exporter.prometheus import promql
from exporter.prometheus.rules import alert_name, build_rules, render_rules
from exporter.signals.catalog import EXPORTER_JOB
from exporter.signals.thresholds import Thresholds, load_thresholds
from tests.support.prom_fixtures import RULES_FILE
from tests.support.servers import require_binary

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "prometheus"


@pytest.fixture
def packaged() -> Thresholds:
    return load_thresholds(REPO / "exporter" / "data" / "thresholds.yaml")


def test_committed_rule_file_is_current(packaged: Thresholds) -> None:
    assert RULES_FILE.read_text(encoding="utf-8") == render_rules(packaged), (
        "prometheus/rules/batch-metrics.rules.yml is stale: "
        "run batch-metrics rules --output prometheus/rules/batch-metrics.rules.yml"
    )


def test_rules_follow_thresholds(packaged: Thresholds) -> None:
    groups = {g["name"]: g["rules"] for g in build_rules(packaged)["groups"]}
    recorded = {r["record"]: r["expr"] for r in groups["batch-metrics.recording"]}
    assert recorded["operation:batch_operation_duration_seconds:mean7d"] == promql.mean_duration(
        "7d"
    )
    assert recorded["operation:batch_items:success_ratio7d"] == promql.success_rate("7d")
    alerts = {r["alert"]: r for r in groups["batch-metrics.alerts"]}
    assert sorted(alerts) == sorted(
        [
            "BatchLongDuration",
            "BatchHighFailureRate",
            "BatchHighTokenUsage",
            "BatchHighCost",
            "BatchTaskStalled",
            "BatchTaskAbandoned",
        ]
    )
    health = {r["alert"]: r for r in groups["batch-metrics.health"]}
    assert health["BatchMetricsExporterDown"]["expr"] == 'up{job="batch-metrics"} < 1'
    assert 'absent(up{job="batch-metrics"})' in health["BatchMetricsExporterAbsent"]["expr"]
    assert health["Watchdog"]["labels"]["severity"] == "none"
    assert sorted(health) == sorted(
        [
            "BatchMetricsExporterDown",
            "BatchMetricsExporterAbsent",
            "BatchMetricsScanErrors",
            "BatchMetricsInvalidRecords",
            "BatchMetricsScanStale",
            "Watchdog",
        ]
    )
    # every alert waits out a blip except the watchdog and the once-only abandoned alert
    every = {**alerts, **health}
    assert {name for name, rule in every.items() if "for" not in rule} == {
        "Watchdog",
        "BatchTaskAbandoned",
    }
    assert alerts["BatchTaskStalled"]["for"] == "1m"
    assert (
        alerts["BatchLongDuration"]["expr"]
        == "operation:batch_operation_duration_seconds:mean7d > 600"
    )
    assert alerts["BatchHighFailureRate"]["expr"] == "operation:batch_items:success_ratio7d < 0.9"
    assert alerts["BatchTaskStalled"]["expr"] == "batch_task_heartbeat_age_seconds > 60"
    for rule in every.values():
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}
    # a signal's alert names the command that reproduces its figure, over the rule's window
    for name in ("BatchLongDuration", "BatchHighFailureRate", "BatchHighCost"):
        assert (
            "`batch-metrics trends --operation {{ $labels.operation }} --since 7d`"
            in alerts[name]["annotations"]["description"]
        )


def test_thresholds_change_the_rules(packaged: Thresholds) -> None:
    changed = packaged.model_copy(
        update={
            "window": "1d",
            "bottlenecks": [packaged.bottlenecks[0].model_copy(update={"threshold": 1200.0})],
            "triggers": [],
        }
    )
    alerts = build_rules(changed)["groups"][1]["rules"]
    assert [a["alert"] for a in alerts] == [
        "BatchLongDuration",
        "BatchTaskStalled",
        "BatchTaskAbandoned",
    ]
    assert alerts[0]["expr"] == "operation:batch_operation_duration_seconds:mean1d > 1200"
    description = alerts[0]["annotations"]["description"]
    assert "(threshold: > 1200 s)" in description
    assert "--since 1d`" in description


def test_alert_name() -> None:
    assert alert_name("high_failure_rate") == "BatchHighFailureRate"


def test_promtool_check_and_unit_tests() -> None:
    promtool = require_binary("promtool")
    checked = subprocess.run(
        [promtool, "check", "rules", str(RULES_FILE)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 16 rules found" in checked.stdout + checked.stderr
    tests = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
    assert tests
    tested = subprocess.run(
        [promtool, "test", "rules", *map(str, tests)], capture_output=True, text=True, check=False
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_prometheus_config_is_valid() -> None:
    promtool = require_binary("promtool")
    checked = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_DIR / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    assert config["rule_files"] == ["rules/*.rules.yml"]


def test_rules_cli_check_and_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "out" / "rules.yml"
    assert main(["rules", "--output", str(target)]) == 0
    assert main(["rules", "--check", str(target)]) == 0
    target.write_text(target.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["rules", "--check", str(target)]) == 1
    assert capsys.readouterr().err == (
        f"{target} is stale: regenerate it with 'batch-metrics rules --output {target}'\n"
    )
    assert main(["rules", "--check", str(tmp_path / "missing.yml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_the_health_alerts_watch_the_job_prometheus_yml_scrapes_serve_under() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs[EXPORTER_JOB]["static_configs"] == [{"targets": ["exporter:9477"]}]
