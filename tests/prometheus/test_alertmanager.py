"""alertmanager/alertmanager.yml on a real Alertmanager: routes and inhibitions (issue 10)."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.servers import http_get, require_binary, running, start_alertmanager, wait_until

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "alertmanager" / "alertmanager.yml"


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (
            {"alertname": "BatchHighCost", "severity": "info", "operation": "execute"},
            "batch-metrics-info",
        ),
        ({"alertname": "BatchHighTokenUsage", "severity": "info"}, "batch-metrics-info"),
        ({"alertname": "Watchdog", "severity": "none"}, "watchdog"),
        ({"alertname": "BatchHighFailureRate", "severity": "critical"}, "batch-metrics"),
        ({"alertname": "BatchLongDuration", "severity": "warning"}, "batch-metrics"),
        ({"alertname": "BatchMetricsExporterDown", "severity": "critical"}, "batch-metrics"),
    ],
)
def test_each_kind_of_alert_takes_its_route(labels: dict[str, str], receiver: str) -> None:
    amtool = require_binary("amtool")
    result = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={CONFIG}"]
        + [f"{k}={v}" for k, v in labels.items()],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == receiver


def post_alerts(url: str, alerts: list[dict[str, str]]) -> None:
    now = datetime.now(UTC)
    body = json.dumps(
        [
            {
                "labels": labels,
                "startsAt": now.isoformat(),
                "endsAt": (now + timedelta(hours=1)).isoformat(),
            }
            for labels in alerts
        ]
    ).encode()
    request = urllib.request.Request(
        f"{url}/api/v2/alerts", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


@pytest.mark.integration
def test_a_cause_inhibits_what_it_implies(tmp_path: Path) -> None:
    exporter = {"job": "batch-metrics", "instance": "exporter:9477"}
    with running(start_alertmanager(CONFIG, tmp_path / "alertmanager")) as alertmanager:
        post_alerts(
            alertmanager.url,
            [
                {"alertname": "BatchMetricsExporterDown", "severity": "critical", **exporter},
                {
                    "alertname": "BatchTaskStalled",
                    "severity": "warning",
                    "batch_id": "47",
                    "task": "task-1",
                    **exporter,
                },
                {"alertname": "BatchMetricsScanStale", "severity": "warning", **exporter},
                {
                    "alertname": "BatchHighFailureRate",
                    "severity": "critical",
                    "operation": "execute",
                },
                {"alertname": "Watchdog", "severity": "none"},
            ],
        )

        def states() -> dict[str, list[str]]:
            body = http_get(f"{alertmanager.url}/api/v2/alerts")[1]
            return {a["labels"]["alertname"]: a["status"]["inhibitedBy"] for a in json.loads(body)}

        wait_until(
            lambda: len(states()) == 5 and bool(states()["BatchTaskStalled"]),
            timeout=30,
            what="the inhibitions to apply",
        )
        found = states()
        # a dead exporter: its stale figures and the stalled task follow from it
        assert found["BatchTaskStalled"] and found["BatchMetricsScanStale"]
        # the cause and what it does not imply are sent
        assert found["BatchMetricsExporterDown"] == []
        assert found["BatchHighFailureRate"] == []
        assert found["Watchdog"] == []
