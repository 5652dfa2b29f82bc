"""The dashboards' own figures (not only "returns data"), on a real Prometheus holding the
designed archive (tests/support/prom_fixtures.py) and scraping ``serve`` with live heartbeats.

tests/prometheus/test_promql.py runs every overview query and checks the series it returns;
here the values of the panels added for the on-call engineer are checked against the plan:
per-run cost and tokens by model, cache-read share, top error types, runs and failures per
hour, spend per day, and the live dashboard's progress and per-batch table.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.index.store import summarize
from exporter.prometheus.series import operation_outcome
from tests.support.prom_fixtures import PLAN, PromStack, start_prom_stack
from tests.support.servers import prom_query, wait_until
from tests.support.thresholds import packaged_thresholds

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromStack]:
    with start_prom_stack(tmp_path_factory.mktemp("dashboard-figures")) as started:
        yield started


@pytest.fixture(scope="module")
def window() -> str:
    return packaged_thresholds().window


def targets(name: str) -> dict[str, list[dict[str, Any]]]:
    dashboard = json.loads((ROOT / f"grafana/dashboards/{name}.json").read_text())
    found = {p["title"]: p["targets"] for p in dashboard["panels"] if p["type"] != "row"}
    assert len(found) == len([p for p in dashboard["panels"] if p["type"] != "row"]), "titles"
    return found


def expr_of(name: str, title: str, index: int = 0, *, window: str = "7d") -> str:
    expr: str = targets(name)[title][index]["expr"]
    return expr.replace("$operation", ".*").replace("$window", window)


def shown(stack: PromStack, expr: str, *labels: str, at: float | None = None) -> dict[Any, float]:
    result = prom_query(stack.prometheus, expr, at=at if at is not None else stack.history_end)
    return {
        tuple(s["metric"].get(label, "") for label in labels): float(s["value"][1]) for s in result
    }


def test_cost_tokens_and_cache_reads_per_run_by_model(stack, window):
    model = {
        op: "mystery-model" if p.cost_usd is None else "claude-sonnet-4-5" for op, p in PLAN.items()
    }
    cost = shown(stack, expr_of("batch-overview", "Cost per run by model", window=window),
                 "operation", "model")  # fmt: skip
    assert cost.keys() == {(op, model[op]) for op, p in PLAN.items() if p.cost_usd is not None}
    for (op, _), value in cost.items():
        assert value == pytest.approx(PLAN[op].cost_usd, rel=1e-9), op
    tokens = shown(stack, expr_of("batch-overview", "Tokens per run by model", window=window),
                   "operation", "model")  # fmt: skip
    assert tokens == pytest.approx(
        {(op, model[op]): p.input_tokens + p.output_tokens for op, p in PLAN.items()}, rel=1e-9
    )
    share = shown(
        stack,
        expr_of("batch-overview", "Cache-read share of input tokens", window=window),
        "operation",
        "model",
    )
    assert share == pytest.approx(
        {(op, model[op]): (p.input_tokens // 5) / p.input_tokens for op, p in PLAN.items()},
        rel=1e-9,
    )


def test_top_error_types_are_counted_and_sorted(stack, window):
    expr = expr_of("batch-overview", "Top error types", window=window)
    assert expr.startswith("sort_desc(topk(")
    result = prom_query(stack.prometheus, expr, at=stack.history_end)
    runs = {op: len(p.durations) for op, p in PLAN.items()}
    assert [(s["metric"]["error_type"], round(float(s["value"][1]))) for s in result] == [
        ("TimeoutError", sum(p.failure * runs[op] for op, p in PLAN.items()))
    ]
    trend = shown(stack, expr_of("batch-overview", "Error trend", window=window), "error_type")
    assert set(trend) == {("TimeoutError",)}


def _ended_within(stack: PromStack, seconds: float) -> list[Any]:
    end = stack.history_end
    return [
        s
        for s in (summarize(r, "designed.json") for r in stack.records)
        if end - seconds < s.end_timestamp <= end
    ]


def test_runs_and_failures_per_hour_and_spend_per_day(stack):
    # One hour back from the last sample. The backfill samples only where records end, so
    # increase() extrapolates the growth it sees between the window's first and last samples
    # to the whole hour: about a fifth more than the runs that ended in it, here.
    last_hour = _ended_within(stack, 3600)
    assert last_hour, "the designed archive ends runs every 30 minutes"
    outcomes = Counter(operation_outcome(s) for s in last_hour)
    runs = shown(stack, expr_of("batch-overview", "Runs per hour by outcome"), "outcome")
    assert runs == pytest.approx({(o,): n for o, n in outcomes.items()}, rel=0.25)
    failed = Counter[str]()
    for s in last_hour:
        failed[s.operation] += s.failure_count or 0
    items = shown(stack, expr_of("batch-overview", "Failed items per hour"), "operation")
    assert items == pytest.approx({(op,): n for op, n in failed.items() if n}, rel=0.25)
    spend = shown(stack, expr_of("batch-overview", "Spend per day by model"), "model")
    day = _ended_within(stack, 86_400)
    assert len(day) == len(stack.records)  # the whole archive ended within the last day
    assert spend == pytest.approx(
        {("claude-sonnet-4-5",): sum(s.estimated_cost or 0.0 for s in day)}, rel=0.02
    )


def test_live_dashboard_shows_progress_and_a_row_per_batch(stack):
    tasks = stack.orchestration / "tasks"
    now = time.time()
    heartbeats = {
        ("7", "task-1"): (0.25, now),
        ("7", "task-2"): (0.75, now - 600),  # stalled for 10 minutes, not yet abandoned
        ("8", "task-1"): (0.5, now),
    }
    for (batch, task), (progress, last_update) in heartbeats.items():
        (tasks / f"batch-{batch}").mkdir(parents=True, exist_ok=True)
        (tasks / f"batch-{batch}" / f"{task}.hb").write_text(
            json.dumps({"status": "running", "progress": progress, "last_update": last_update}),
            encoding="utf-8",
        )
    live = targets("batch-live")
    progress = live["Progress per running task"][0]["expr"]
    wait_until(
        lambda: len(prom_query(stack.prometheus, progress)) == len(heartbeats),
        what="the heartbeats scraped",
    )
    shown_progress = shown(stack, progress, "batch_id", "task", at=time.time())
    assert shown_progress == {key: p for key, (p, _) in heartbeats.items()}
    table = [t["expr"] for t in live["Per batch"]]
    at = time.time()
    running, stalled, oldest, mean = (shown(stack, e, "batch_id", at=at) for e in table)
    assert running == {("7",): 2, ("8",): 1}
    assert stalled == {("7",): 1, ("8",): 0}
    assert oldest[("7",)] >= 600 > oldest[("8",)]
    assert mean == pytest.approx({("7",): 0.5, ("8",): 0.5})
    for title in ("Running tasks", "Running batches", "Stalled tasks"):
        (value,) = shown(stack, live[title][0]["expr"], at=at).values()
        assert value == {"Running tasks": 3, "Running batches": 2, "Stalled tasks": 1}[title]
