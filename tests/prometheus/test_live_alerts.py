"""A real Prometheus scraping a live ``serve`` (no backfill), with the project's rule files.

As a user's stack sees it: ``serve`` starts on an archive that has never seen ``execute``; the
operation's very first runs then arrive all failed and slow. The success-rate and mean-duration
alerts must reach pending (or firing) within a few evaluations, for exactly that operation, and
the Grafana alert rules' queries, run on the same Prometheus, must select the same operations.
The command each alert text names (`trends --operation OP --since 7d`) gives the same figure.
When ``serve`` dies, the exporter-down alert takes over (issue 10).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.archive.files import write_record
from exporter.cli.main import main as cli_main
from exporter.index.store import ArchiveIndex
from exporter.prometheus.server import MetricsServer, build_registry
from tests.support.records import rec
from tests.support.servers import (
    Server,
    http_get,
    prom_query,
    running,
    start_prometheus,
    wait_until,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_RULES = REPO / "prometheus" / "rules" / "batch-metrics.rules.yml"
GRAFANA_RULES = REPO / "grafana" / "provisioning" / "alerting" / "batch-metrics-rules.yaml"


@dataclass
class LiveStack:
    prometheus: Server
    exporter: MetricsServer
    archive: Path


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveStack]:
    archive = tmp_path / "archive"
    # generate has run before, fine: 100 % of its items, 5 minutes a run
    write_record(
        archive, rec("1", "generate", duration=300.0, success=5, failure=0, status="completed")
    )
    index = ArchiveIndex(archive, db_path=tmp_path / "index.db")
    registry, collector = build_registry(index, tmp_path / "orchestration")
    exporter = MetricsServer.start(registry, collector, port=0, rescan_interval=3600)
    try:
        config = tmp_path / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(PROMETHEUS_RULES)],
                    "scrape_configs": [
                        {
                            "job_name": "batch-metrics",
                            "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}],
                        }
                    ],
                }
            ),
            encoding="utf-8",
        )
        with running(start_prometheus(config, tmp_path / "prometheus")) as prometheus:
            yield LiveStack(prometheus, exporter, archive)
    finally:
        exporter.stop()
        index.close()


def alerting(prometheus: Server, alertname: str) -> dict[str, str]:
    """Operation (or instance) -> state (pending, firing) of ``alertname``'s alerts now."""
    found = prom_query(prometheus, f'ALERTS{{alertname="{alertname}"}}')
    return {
        s["metric"].get("operation") or s["metric"].get("instance", ""): s["metric"]["alertstate"]
        for s in found
    }


RECORDED = {
    "success_rate": "operation:batch_items:success_ratio7d",
    "mean_duration_seconds": "operation:batch_operation_duration_seconds:mean7d",
}


def alert_description(prometheus: Server, alertname: str, operation: str) -> str:
    body = json.loads(http_get(f"{prometheus.url}/api/v1/alerts")[1])
    (alert,) = [
        a
        for a in body["data"]["alerts"]
        if a["labels"]["alertname"] == alertname and a["labels"].get("operation") == operation
    ]
    description: str = alert["annotations"]["description"]
    return description


def run_cli(command: str, archive: Path) -> dict[str, Any]:
    """``command`` (as an alert prints it) on ``archive``, its JSON report."""
    argv = [*shlex.split(command)[1:], "--archive", str(archive), "--format", "json", "--no-save"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(argv) == 0
    report: dict[str, Any] = json.loads(out.getvalue())
    return report


def grafana_rule_selects(prometheus: Server, rule: dict[str, Any]) -> set[str]:
    """Grafana's A (instant query) -> reduce (last, drop non-numbers) -> threshold, now."""
    query, _, threshold = (step["model"] for step in rule["data"])
    (condition,) = threshold["conditions"]
    kind, (limit,) = condition["evaluator"]["type"], condition["evaluator"]["params"]
    compare = {"gt": lambda v: v > limit, "lt": lambda v: v < limit}[kind]
    return {
        s["metric"].get("operation") or s["metric"].get("instance", "")
        for s in prom_query(prometheus, query["expr"], at=time.time())
        if math.isfinite(float(s["value"][1])) and compare(float(s["value"][1]))
    }


def test_the_first_runs_of_an_operation_all_failed_and_slow_alert(live: LiveStack) -> None:
    prom = live.prometheus
    # serve's first scrapes: execute exists only as zero-initialised series
    wait_until(
        lambda: bool(
            prom_query(prom, 'count_over_time(batch_items_total{operation="execute"}[1m]) > 1')
        ),
        timeout=30,
        what="execute's zero series scraped twice",
    )
    assert prom_query(prom, 'ALERTS{alertname=~"BatchHighFailureRate|BatchLongDuration"}') == []

    # the first three runs of execute arrive: every item failed, 1000 s each
    now = datetime.now(UTC)
    for n in range(3):
        write_record(
            live.archive,
            rec(
                f"9{n}", duration=1000.0, total=4, success=0, failure=4, status="failed", start=now
            ),
        )
    wait_until(
        lambda: (
            "execute" in alerting(prom, "BatchHighFailureRate")
            and "execute" in alerting(prom, "BatchLongDuration")
        ),
        timeout=30,
        what="the failure-rate and duration alerts for execute's first runs",
    )
    assert set(alerting(prom, "BatchHighFailureRate")) == {"execute"}
    assert set(alerting(prom, "BatchLongDuration")) == {"execute"}
    assert {state for state in alerting(prom, "BatchHighFailureRate").values()} <= {
        "pending",
        "firing",
    }
    (rate,) = prom_query(prom, 'operation:batch_items:success_ratio7d{operation="execute"}')
    assert float(rate["value"][1]) == 0.0
    (mean,) = prom_query(
        prom, 'operation:batch_operation_duration_seconds:mean7d{operation="execute"}'
    )
    assert float(mean["value"][1]) == pytest.approx(1000.0, rel=1e-9)

    # the command each alert names reproduces its figure from the archive
    for name, key, value in (
        ("BatchHighFailureRate", "success_rate", lambda op: op["success_rate"]),
        ("BatchLongDuration", "mean_duration_seconds", lambda op: op["durations"]["mean"]),
    ):
        description = alert_description(prom, name, "execute")
        (command,) = re.findall(r"`(batch-metrics trends [^`]*)`", description)
        assert command == "batch-metrics trends --operation execute --since 7d"
        report = run_cli(command, live.archive)
        recorded = prom_query(prom, f'{RECORDED[key]}{{operation="execute"}}')[0]["value"][1]
        assert value(report["operations"]["execute"]) == pytest.approx(float(recorded), rel=1e-9)

    # Grafana's rules, on the same Prometheus and data, select the same operations
    (group,) = yaml.safe_load(GRAFANA_RULES.read_text(encoding="utf-8"))["groups"]
    grafana = {rule["title"]: rule for rule in group["rules"]}
    for name in ("BatchHighFailureRate", "BatchLongDuration"):
        assert grafana_rule_selects(prom, grafana[name]) == set(alerting(prom, name)), name
    assert grafana_rule_selects(prom, grafana["BatchMetricsExporterDown"]) == set()

    # serve dies: the exporter-down alert takes over, in both engines
    instance = f"127.0.0.1:{live.exporter.port}"
    live.exporter.stop()
    wait_until(
        lambda: instance in alerting(prom, "BatchMetricsExporterDown"),
        timeout=30,
        what="BatchMetricsExporterDown once serve is gone",
    )
    assert grafana_rule_selects(prom, grafana["BatchMetricsExporterDown"]) == {instance}
    # the stalled-task rule's query has no series now: Grafana's NoData, never OK
    stalled = grafana["BatchTaskStalled"]
    assert prom_query(prom, stalled["data"][0]["model"]["expr"]) == []
    assert stalled["noDataState"] == "NoData"
    assert json.dumps(grafana["BatchMetricsExporterDown"]["noDataState"]) == '"Alerting"'
