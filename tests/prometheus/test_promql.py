"""Every Grafana panel and alert query, run on a real Prometheus holding a backfilled archive.

The archive (tests/support/prom_fixtures.py) is designed so that some operations breach the
thresholds and some do not. Panels must return the series their legends name (no empty panel
for data that exists); the Grafana alert rules' reduce (last, drop non-numbers) and threshold
steps, applied to their query's result, must fire for exactly the operations that
``batch-metrics trends`` flags on the same archive.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.cli.main import main as cli_main
from exporter.index.store import summarize
from exporter.prometheus.rules import alert_name
from exporter.prometheus.series import operation_outcome
from exporter.signals.thresholds import Thresholds
from tests.support.prom_fixtures import PLAN, PromStack, RunPlan, start_prom_stack
from tests.support.servers import prom_query, wait_until
from tests.support.thresholds import packaged_thresholds

ROOT = Path(__file__).resolve().parents[2]
OVERVIEW = ROOT / "grafana/dashboards/batch-overview.json"
RULES_FILE = ROOT / "grafana/provisioning/alerting/batch-metrics-rules.yaml"
pytestmark = pytest.mark.integration

LAST_SUCCESS_PANEL = "Time since last success"
# Panels whose data exists for some operations only (see PLAN): which ones.
PARTIAL_DATA: dict[str, Callable[[RunPlan], bool]] = {
    "Cost by operation and model": lambda plan: plan.cost_usd is not None,
    "Cost per run": lambda plan: plan.cost_usd is not None,
    "Parallel efficiency": lambda plan: any(e is not None for e in plan.efficiencies),
    "Failed items per hour": lambda plan: plan.failure > 0,
    "Cost per run by model": lambda plan: plan.cost_usd is not None,
}
# The exporter's own health: series of the live scrapes, not of the backfilled history.
HEALTH_PANELS = {
    "Exporter scraped",
    "Archive records",
    "Invalid records",
    "Scan errors",
    "Last archive scan",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromStack]:
    with start_prom_stack(tmp_path_factory.mktemp("grafana-promql")) as started:
        yield started


@pytest.fixture(scope="module")
def thresholds() -> Thresholds:
    return packaged_thresholds()


def substitute(expr: str, *, operation: str, window: str) -> str:
    return expr.replace("$operation", operation).replace("$window", window)


def overview_targets() -> list[tuple[str, dict[str, Any]]]:
    dashboard = json.loads(OVERVIEW.read_text())
    return [
        (panel["title"], target)
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


@pytest.mark.parametrize(("title", "target"), overview_targets(), ids=lambda v: str(v)[:40])
@pytest.mark.parametrize("operation", [".*", "execute"])
def test_overview_panel_returns_the_series_its_legend_names(
    stack: PromStack, thresholds: Thresholds, title: str, target: dict[str, Any], operation: str
) -> None:
    with_data = {op for op, plan in PLAN.items() if PARTIAL_DATA.get(title, bool)(plan)}
    if title == LAST_SUCCESS_PANEL:  # only operations with a fully successful run
        with_data = {
            r.operation
            for r in stack.records
            if operation_outcome(summarize(r, "designed.json")) == "success"
        }
        assert with_data == {"generate"}
    expected = with_data if operation == ".*" else with_data & {operation}
    expr = substitute(target["expr"], operation=operation, window=thresholds.window)
    if title in HEALTH_PANELS:  # now, once the scrapes it needs have happened
        wait_until(lambda: bool(prom_query(stack.prometheus, expr)), what=f"{title}: {expr}")
        result = prom_query(stack.prometheus, expr)
    else:
        result = prom_query(stack.prometheus, expr, at=stack.history_end)
    labels = re.findall(r"\{\{(\w+)\}\}", target["legendFormat"])
    for series in result:
        assert set(labels) <= set(series["metric"]), (title, series["metric"])
        assert math.isfinite(float(series["value"][1])), (title, series)
    if "operation" in labels:
        assert {s["metric"]["operation"] for s in result} == expected, title
    else:
        assert result, f"{title}: {expr} returned no series"


def test_signal_panels_show_what_trends_reports(stack: PromStack, thresholds: Thresholds) -> None:
    trends = run_trends(stack.archive)
    panels = {title: target for title, target in overview_targets()}
    cases = {
        "Mean duration per operation": lambda op: op["durations"]["mean"],
        "Item success rate per operation": lambda op: op["success_rate"],
        "Parallel efficiency": lambda op: (op["parallel"] or {}).get("overall_efficiency"),
    }
    for title, figure in cases.items():
        expr = substitute(panels[title]["expr"], operation=".*", window=thresholds.window)
        shown = {
            s["metric"]["operation"]: float(s["value"][1])
            for s in prom_query(stack.prometheus, expr, at=stack.history_end)
        }
        expected = {
            name: value
            for name, op in trends["operations"].items()
            if (value := figure(op)) is not None
        }
        assert shown.keys() == expected.keys()
        for name, value in expected.items():
            assert shown[name] == pytest.approx(value, rel=1e-9), (title, name)
    # Parallel efficiency is time-weighted (sum of item seconds / sum of wall seconds) on both
    # sides, straight from the plan, and not the mean of the per-run figures.
    parallel = {name: op["parallel"] for name, op in trends["operations"].items() if op["parallel"]}
    assert parallel.keys() == {"generate", "execute", "review"}
    for name, figures in parallel.items():
        plan = PLAN[name]
        timed = [
            (d, e) for d, e in zip(plan.durations, plan.efficiencies, strict=True) if d is not None
        ]
        work = math.fsum(d * e for d, e in timed if e is not None)
        wall = math.fsum(d for d, _ in timed)
        assert figures["overall_efficiency"] == pytest.approx(work / wall, rel=1e-12), name
        assert figures["overall_efficiency"] != pytest.approx(figures["mean_efficiency"]), name


def run_trends(archive: Path) -> dict[str, Any]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli_main(
            ["trends", "--all", "--format", "json", "--no-save", "--archive", str(archive)]
        )
    assert code == 0
    report: dict[str, Any] = json.loads(out.getvalue())
    return report


def evaluate_grafana_rule(
    stack: PromStack, rule: dict[str, Any], at: float | None = None
) -> set[str]:
    """Grafana's A -> reduce(last, dropNN) -> threshold, on the real query result at ``at``
    (default: the end of the backfilled history)."""
    query, reduce, threshold = (step["model"] for step in rule["data"])
    assert (reduce["reducer"], reduce["settings"]) == ("last", {"mode": "dropNN"})
    when = stack.history_end if at is None else at
    result = prom_query(stack.prometheus, query["expr"], at=when)
    reduced = {
        json.dumps(s["metric"], sort_keys=True): float(s["value"][1])
        for s in result
        if math.isfinite(float(s["value"][1]))
    }
    (condition,) = threshold["conditions"]
    kind, (limit,) = condition["evaluator"]["type"], condition["evaluator"]["params"]
    compare = {"gt": lambda v: v > limit, "lt": lambda v: v < limit}[kind]
    return {
        json.loads(key).get("operation", key) for key, value in reduced.items() if compare(value)
    }


def test_grafana_alert_rules_fire_for_exactly_what_trends_flags(
    stack: PromStack, thresholds: Thresholds
) -> None:
    (group,) = yaml.safe_load(RULES_FILE.read_text())["groups"]
    rules = {rule["title"]: rule for rule in group["rules"]}
    flagged: dict[str, set[str]] = {alert_name(b.name): set() for b in thresholds.bottlenecks}
    for bottleneck in run_trends(stack.archive)["bottlenecks"]:
        flagged[alert_name(bottleneck["name"])].add(bottleneck["operation"])
    assert flagged == {
        "BatchLongDuration": {"execute", "update-context"},
        "BatchHighFailureRate": {"execute", "review"},
    }
    for name, operations in flagged.items():
        assert evaluate_grafana_rule(stack, rules[name]) == operations, name

    # Decision-framework triggers: per-run tokens and cost straight from the plan.
    per_run: dict[str, dict[str, float | None]] = {
        "tokens_per_run": {op: p.input_tokens + p.output_tokens for op, p in PLAN.items()},
        "cost_usd_per_run": {op: p.cost_usd for op, p in PLAN.items()},
    }
    for trigger in thresholds.triggers:
        expected = {
            op
            for op, value in per_run[trigger.signal].items()
            if value is not None and trigger.flags(value)
        }
        assert expected == {"execute"}
        assert evaluate_grafana_rule(stack, rules[alert_name(trigger.name)]) == expected

    # No running task: the stalled rule's query gives one zero series while the exporter is
    # scraped (so that no data at all means a dead exporter, NoData, never OK), and no alert.
    assert evaluate_grafana_rule(stack, rules["BatchTaskStalled"]) == set()
    assert rules["BatchTaskStalled"]["noDataState"] == "NoData"
    wait_until(
        lambda: bool(prom_query(stack.prometheus, 'up{job="batch-metrics"} == 1')),
        timeout=30,
        what="the first scrape of serve",
    )
    now = time.time()
    stalled_query = rules["BatchTaskStalled"]["data"][0]["model"]["expr"]
    assert [s["value"][1] for s in prom_query(stack.prometheus, stalled_query, at=now)] == ["0"]
    # The exporter is healthy: no health rule fires but the watchdog.
    health = {"Watchdog", *(n for n in rules if n.startswith("BatchMetrics"))}
    assert len(health) == 6
    firing = {name for name in health if evaluate_grafana_rule(stack, rules[name], at=now)}
    assert firing == {"Watchdog"}
