"""Against a real Prometheus: scraping ``serve``, backfilled history, generated rules, alerts.

One Prometheus per session (``prom_stack``) holds the designed archive's backfilled history
(ending four hours ago) and scrapes ``serve`` over the same archive every second, evaluating the
committed rule file every second. Past-time queries see the backfill only; queries at the
present see both, which the window functions combine without counting anything twice (the
scraped counters do not grow, so their increase is 0).
"""

from __future__ import annotations

import functools
import json
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.archive.model import parse_record
from exporter.index.store import ArchiveIndex
from exporter.prometheus import promql
from exporter.reports.results import TrendReport
from exporter.reports.trends import compute_trends
from exporter.signals.thresholds import Thresholds, load_thresholds
from tests.support.prom_fixtures import PLAN, RUN_SPACING, PromStack, start_prom_stack
from tests.support.servers import prom_query, wait_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
REL = 1e-9


@pytest.fixture(scope="session")
def prom_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromStack]:
    with start_prom_stack(tmp_path_factory.mktemp("prom-stack")) as stack:
        yield stack


@pytest.fixture(scope="session")
def thresholds() -> Thresholds:
    return load_thresholds(REPO / "exporter" / "data" / "thresholds.yaml")


def by_operation(result: list[dict[str, object]]) -> dict[str, float]:
    return {r["metric"]["operation"]: float(r["value"][1]) for r in result}  # type: ignore[index]


def trends_until(
    stack: PromStack, until: float, thresholds: Thresholds, tmp_path: Path
) -> TrendReport:
    """``trends`` over the records of the stack's archive that completed by ``until``."""
    subset = tmp_path / "subset"
    subset.mkdir()
    for path in stack.archive.glob("batch-*.json"):
        record = parse_record(path.read_bytes())
        end = record.end_timestamp or record.timestamp  # no duration: it counts at its start
        if end.timestamp() <= until:
            shutil.copy(path, subset / path.name)
    with ArchiveIndex(subset, db_path=tmp_path / "subset.db") as index:
        index.refresh()
        return compute_trends(index, thresholds)


def test_scraped_values_equal_the_archive(prom_stack: PromStack) -> None:
    prom = prom_stack.prometheus
    wait_until(
        lambda: (
            [
                s["value"][1]
                for s in prom_query(prom, 'batch_metrics_exporter_records{job="batch-metrics"}')
            ]
            == ["24"]
        ),
        timeout=30,
        what="the first scrape of serve",
    )
    # update-context records have no status: 19 of 20 items succeeded, so the run is partial
    runs = {("generate", "success"): 6, ("execute", "partial"): 6, ("review", "partial"): 6}
    runs[("update-context", "partial")] = 6
    items: Counter[tuple[str, str]] = Counter()
    seconds: dict[str, float] = {}
    for r in prom_stack.records:
        m = r.metrics
        items[(r.operation, "success")] += m.success_count or 0
        items[(r.operation, "failure")] += m.failure_count or 0
        unknown = (
            (m.total_items or 0)
            - (m.success_count or 0)
            - (m.failure_count or 0)
            - (m.partial_count or 0)
        )
        items[(r.operation, "unknown")] += unknown
        items[(r.operation, "partial")] += m.partial_count or 0
        seconds[r.operation] = seconds.get(r.operation, 0.0) + (r.duration_seconds or 0.0)
    scraped_runs = {
        (s["metric"]["operation"], s["metric"]["outcome"]): float(s["value"][1])
        for s in prom_query(prom, 'batch_operations_total{job="batch-metrics"}')
    }
    # every bounded series exists from the start, at 0 until a record adds to it
    assert {k: v for k, v in scraped_runs.items() if v} == {k: float(v) for k, v in runs.items()}
    assert len(scraped_runs) == len(PLAN) * 3
    scraped_items = {
        (s["metric"]["operation"], s["metric"]["outcome"]): float(s["value"][1])
        for s in prom_query(prom, 'batch_items_total{job="batch-metrics"}')
    }
    assert {k: v for k, v in scraped_items.items() if v} == {
        k: float(v) for k, v in items.items() if v
    }
    assert len(scraped_items) == len(PLAN) * 4
    scraped_seconds = by_operation(
        prom_query(
            prom, 'sum by (operation) (batch_operation_duration_seconds_sum{job="batch-metrics"})'
        )
    )
    assert scraped_seconds == pytest.approx(seconds, rel=1e-12)
    counts = by_operation(
        prom_query(
            prom, 'sum by (operation) (batch_operation_duration_seconds_count{job="batch-metrics"})'
        )
    )
    assert counts == {
        op: float(sum(d is not None for d in plan.durations)) for op, plan in PLAN.items()
    }
    assert (
        prom_query(prom, 'batch_metrics_exporter_records{job="batch-metrics"}')[0]["value"][1]
        == "24"
    )


@pytest.mark.parametrize("runs_done", [3, 6])
def test_backfilled_history_matches_trends(
    prom_stack: PromStack, thresholds: Thresholds, tmp_path: Path, runs_done: int
) -> None:
    at = prom_stack.history_end - (6 - runs_done) * RUN_SPACING
    report = trends_until(prom_stack, at, thresholds, tmp_path)
    assert report.records == 4 * runs_done
    prom = prom_stack.prometheus
    means = by_operation(prom_query(prom, promql.mean_duration(thresholds.window), at=at))
    rates = by_operation(prom_query(prom, promql.success_rate(thresholds.window), at=at))
    expected_means = {op: t.durations.mean for op, t in report.operations.items() if t.durations}
    expected_rates = {op: t.success_rate for op, t in report.operations.items()}
    assert set(means) == set(expected_means) == set(PLAN)
    for op in PLAN:
        assert means[op] == pytest.approx(expected_means[op], rel=REL), op
        assert rates[op] == pytest.approx(expected_rates[op], rel=REL), op


def test_alert_expressions_select_the_trends_bottlenecks(
    prom_stack: PromStack, thresholds: Thresholds, tmp_path: Path
) -> None:
    at = prom_stack.history_end
    report = trends_until(prom_stack, at, thresholds, tmp_path)
    flagged = {(b.name, b.operation) for b in report.bottlenecks}
    # the designed archive: some operations breach, some do not
    assert flagged == {
        ("long_duration", "execute"),
        ("long_duration", "update-context"),
        ("high_failure_rate", "execute"),
        ("high_failure_rate", "review"),
    }
    for rule in thresholds.bottlenecks:
        selected = prom_query(
            prom_stack.prometheus, promql.alert_expr(rule, thresholds, recorded=False), at=at
        )
        assert {s["metric"]["operation"] for s in selected} == {
            op for name, op in flagged if name == rule.name
        }


def _alerting(stack: PromStack, alertname: str) -> set[str]:
    found = prom_query(stack.prometheus, f'ALERTS{{alertname="{alertname}"}}')
    return {s["metric"].get("operation") or s["metric"]["task"] for s in found}


def test_evaluated_rules_flag_the_trends_bottlenecks(
    prom_stack: PromStack, thresholds: Thresholds, tmp_path: Path
) -> None:
    report = trends_until(prom_stack, time.time(), thresholds, tmp_path)
    expected = {
        rule.name: {b.operation for b in report.bottlenecks if b.name == rule.name}
        for rule in thresholds.bottlenecks
    }
    alert_names = {
        "long_duration": "BatchLongDuration",
        "high_failure_rate": "BatchHighFailureRate",
    }
    for name, alert in alert_names.items():
        wait_until(
            functools.partial(lambda a, n: _alerting(prom_stack, a) == expected[n], alert, name),
            timeout=30,
            what=f"{alert} alerts",
        )
    # the decision-framework triggers: only execute uses > 100k tokens and > $1 per run
    wait_until(
        lambda: _alerting(prom_stack, "BatchHighTokenUsage") == {"execute"},
        timeout=30,
        what="tokens",
    )
    wait_until(
        lambda: _alerting(prom_stack, "BatchHighCost") == {"execute"}, timeout=30, what="cost"
    )
    recorded = by_operation(
        prom_query(
            prom_stack.prometheus, promql.recorded_name("mean_duration_seconds", thresholds.window)
        )
    )
    for op, trend in report.operations.items():
        assert trend.durations is not None
        assert recorded[op] == pytest.approx(trend.durations.mean, rel=REL)
    ratios = by_operation(
        prom_query(prom_stack.prometheus, promql.recorded_name("success_rate", thresholds.window))
    )
    assert ratios == pytest.approx(
        {op: t.success_rate for op, t in report.operations.items()}, rel=REL
    )


def test_stalled_task_alerts(prom_stack: PromStack) -> None:
    batch_dir = prom_stack.orchestration / "tasks" / "batch-90"
    batch_dir.mkdir(parents=True)
    now = time.time()
    (batch_dir / "task-1.hb").write_text(
        json.dumps({"status": "running", "last_update": now - 600})
    )
    (batch_dir / "task-2.hb").write_text(json.dumps({"status": "running", "last_update": now}))
    try:
        wait_until(
            lambda: len(prom_query(prom_stack.prometheus, promql.HEARTBEAT_AGE_METRIC)) == 2,
            timeout=30,
            what="both heartbeats scraped",
        )
        wait_until(
            lambda: _alerting(prom_stack, "BatchTaskStalled") == {"task-1"},
            timeout=30,
            what="stall alert",
        )
        running = prom_query(prom_stack.prometheus, 'batch_tasks_running{batch_id="90"}')
        assert running[0]["value"][1] == "2"
    finally:
        shutil.rmtree(batch_dir)
