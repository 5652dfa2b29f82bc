"""One window rule: a record counts at its end time, in ``trends --since`` and in PromQL alike.

An archive of a month of generated runs (every outcome, models, runs without a duration) ends
twenty minutes ago; ``backfill --tsdb`` loads it into a real Prometheus. Over the whole span
and over each window the dashboards offer (the alerts use 7d), PromQL's per-operation mean
duration and success rate equal what ``trends`` reports for the runs that ended inside the
window: to 1e-9 (float rounding) when every series of the operation counted before the window
or started with it, since Prometheus then extrapolates numerator and denominator alike; within
0.55 / (n - 1) for n runs in the window when a series (an outcome) first counts inside it, as
docs/prometheus.md derives ("How exact").
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import pytest
import yaml

from exporter.archive.files import record_path
from exporter.archive.model import dump_record
from exporter.cli.main import main
from exporter.grafana.dashboards import WINDOW_OPTIONS
from exporter.grafana.queries import only_selected
from exporter.index.store import ArchiveIndex
from exporter.index.summary import RecordFilter
from exporter.prometheus import promql
from exporter.prometheus.series import DURATION, ITEMS, contributions
from exporter.reports.since import parse_since
from exporter.reports.trends import compute_trends
from exporter.signals.thresholds import load_thresholds
from instrumentation.semconv import OPERATIONS
from tests.support.generated_archive import make_record
from tests.support.servers import Server, prom_query, require_binary, running, start_prometheus

pytestmark = pytest.mark.integration

REL: Final = 1e-9
RUNS: Final = 240
SPACING: Final = 10_807.0  # seconds between run ends: a month of runs, none near a boundary
LAST_END_AGO: Final = 1_200.0
WINDOWS: Final = (*WINDOW_OPTIONS, "2w")  # plus one longer than a dashboard's default
SPAN: Final = "40d"  # the whole history


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("windows") / "completed-batches"
    path.mkdir()
    rng = random.Random(13)
    last_end = time.time() - LAST_END_AGO
    for n in range(RUNS):
        record = make_record(rng, n, with_duration=n % 11 != 10)
        end = last_end - (RUNS - 1 - n) * SPACING
        start = datetime.fromtimestamp(end - (record.duration_seconds or 0.0), UTC)
        record = record.model_copy(update={"timestamp": start})
        record_path(path, record).write_text(dump_record(record), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def prometheus(archive: Path) -> Iterator[Server]:
    require_binary("promtool")
    work = archive.parent
    data = work / "prom-data"
    assert main(["backfill", "--archive", str(archive), "--tsdb", str(data)]) == 0
    config = work / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "1m"}}), encoding="utf-8")
    server = start_prometheus(
        config, work / "prometheus", storage=data, extra=["--storage.tsdb.retention.time=10y"]
    )
    with running(server):
        yield server


def _by_operation(server: Server, expr: str, at: float) -> dict[str, float]:
    return {r["metric"]["operation"]: float(r["value"][1]) for r in prom_query(server, expr, at)}


def _tolerances(archive: Path, tmp_path: Path, since: float) -> dict[str, float]:
    """Per operation: REL, or the documented bound when a series first counts in the window."""
    first: dict[tuple[str, ...], float] = {}
    op_first: dict[str, float] = {}
    runs: dict[str, int] = {}
    with ArchiveIndex(archive, tmp_path / "tol.sqlite") as index:
        index.refresh()
        for summary in index.summaries():
            c = contributions(summary)
            op = summary.operation
            op_first.setdefault(op, c.time)
            runs[op] = runs.get(op, 0) + (c.time >= since)
            keys = [labels for (f, labels), _ in c.counters if f is ITEMS]
            keys += [("d", *labels) for (f, labels), _, _ in c.observations if f is DURATION]
            for key in keys:
                first.setdefault(key, c.time)
    late = {key[-2] for key, t in first.items() if t >= since and t > op_first[key[-2]]}
    return {op: 0.55 / (n - 1) if op in late and n > 1 else REL for op, n in runs.items()}


def _seconds(window: str) -> float:
    now = datetime.now(UTC)
    return (now - parse_since(window, now)).total_seconds()


@pytest.mark.parametrize("window", [*WINDOWS, SPAN])
def test_promql_over_a_window_equals_trends_over_runs_that_ended_in_it(
    archive: Path, prometheus: Server, tmp_path: Path, window: str
) -> None:
    at = time.time()
    where = RecordFilter(since=at - _seconds(window))
    with ArchiveIndex(archive, tmp_path / "ix.sqlite") as index:
        index.refresh()
        report = compute_trends(index, load_thresholds(), where)
    assert report.records > 0
    means = _by_operation(prometheus, promql.mean_duration(window), at)
    rates = _by_operation(prometheus, promql.success_rate(window), at)
    expected_means = {op: t.durations.mean for op, t in report.operations.items() if t.durations}
    expected_rates = {
        op: t.success_rate for op, t in report.operations.items() if t.success_rate is not None
    }
    tolerance = _tolerances(archive, tmp_path, where.since or 0.0)
    assert set(means) == set(expected_means)
    assert set(rates) == set(expected_rates)
    for op, mean in means.items():
        assert mean == pytest.approx(expected_means[op], rel=tolerance[op]), op
        assert rates[op] == pytest.approx(expected_rates[op], rel=tolerance[op]), op


@pytest.mark.parametrize("window", WINDOW_OPTIONS)
def test_dashboard_signals_keep_operations_whose_last_run_ended_minutes_ago(
    prometheus: Server, window: str
) -> None:
    """A panel's ``$operation`` filter keeps every operation with a sample in its window: in
    backfilled history the last sample is the last run's end, twenty minutes ago here, beyond
    an instant selector's five-minute look-back."""
    at = time.time()
    shown_any = False
    for signal, query in promql.SIGNALS.items():
        plain = _by_operation(prometheus, query(window), at)
        panel = only_selected(query(window), window).replace("$operation", ".*")
        assert _by_operation(prometheus, panel, at) == plain, signal
        shown_any = shown_any or bool(plain)
    assert shown_any


@pytest.mark.parametrize("operation", OPERATIONS)
def test_the_command_an_alert_names_reproduces_its_figure(
    archive: Path,
    prometheus: Server,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    operation: str,
) -> None:
    """``trends --operation X --since 7d`` (what the alert texts send people to) = the rule."""
    window = load_thresholds().window
    argv = ["trends", "--archive", str(archive), "--operation", operation]
    assert main([*argv, "--since", window, "--format", "json", "--no-save"]) == 0
    at = time.time()
    figures = json.loads(capsys.readouterr().out)["operations"][operation]
    mean = _by_operation(prometheus, promql.mean_duration(window), at)[operation]
    rate = _by_operation(prometheus, promql.success_rate(window), at)[operation]
    assert mean == pytest.approx(figures["durations"]["mean"], rel=REL)
    assert rate == pytest.approx(figures["success_rate"], rel=REL)


def test_no_run_ends_near_a_window_boundary() -> None:
    """The fixture's premise: the tests' clock and Prometheus' may differ by seconds."""
    for window in (*WINDOWS, SPAN):
        offset = _seconds(window) - LAST_END_AGO
        nearest = min(abs(offset - k * SPACING) for k in range(RUNS))
        assert nearest > 120, window
    assert timedelta(seconds=RUNS * SPACING) < timedelta(days=40)
