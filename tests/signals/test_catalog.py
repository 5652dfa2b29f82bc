"""The signal catalog: every view computes a signal from its one declaration."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.archive.files import write_record
from exporter.archive.model import ModelUsage, TokenUsage
from exporter.index.store import ArchiveIndex
from exporter.prometheus import promql
from exporter.prometheus.rules import build_rules
from exporter.reports.trends import compute_trends
from exporter.signals.alerts import alert_specs, trends_command
from exporter.signals.catalog import SIGNALS, OperationFigures
from exporter.signals.thresholds import Bottleneck, Thresholds, load_thresholds
from tests.support.records import rec

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def packaged() -> Thresholds:
    return load_thresholds(REPO / "exporter" / "data" / "thresholds.yaml")


def test_every_rule_of_the_thresholds_file_names_a_catalog_signal(packaged: Thresholds) -> None:
    for rule in (*packaged.bottlenecks, *packaged.triggers):
        assert rule.signal in SIGNALS
    with pytest.raises(ValueError, match="unknown signal 'tokens_per_item'"):
        Bottleneck.model_validate(
            {
                "name": "x",
                "signal": "tokens_per_item",
                "comparison": ">",
                "threshold": 1,
                "summary": "s",
                "recommendation": "r",
            }
        )


def test_the_rules_and_the_dashboards_read_the_catalogs_queries(packaged: Thresholds) -> None:
    recording = {r["record"]: r["expr"] for r in build_rules(packaged)["groups"][0]["rules"]}
    for key, signal in SIGNALS.items():
        assert promql.SIGNALS[key] is signal.query
        assert recording[signal.recorded(packaged.window)] == signal.query(packaged.window)


def test_evaluators_are_the_promql_definitions_on_totals() -> None:
    figures = OperationFigures(
        runs=4,
        timed_runs=3,
        duration_seconds=2400.0,
        items=40,
        success=30,
        failure=6,
        partial=2,
        tokens=600_000,
        cost_usd=6.0,
    )
    values = {key: s.evaluate(figures) for key, s in SIGNALS.items()}
    # duration over timed runs; successes over every item (the 2 of unknown outcome too);
    # tokens and cost over every run, as the PromQL divides by batch_operations_total
    assert values == {
        "mean_duration_seconds": 800.0,
        "success_rate": 0.75,
        "tokens_per_run": 150_000.0,
        "cost_usd_per_run": 1.5,
    }
    empty = OperationFigures(0, 0, 0.0, 0, 0, 0, 0, 0, 0.0)
    assert {key: s.evaluate(empty) for key, s in SIGNALS.items()} == dict.fromkeys(SIGNALS)


def usage(input_tokens: int, output_tokens: int) -> TokenUsage:
    return TokenUsage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
        by_model=[ModelUsage(model="m", input_tokens=input_tokens, output_tokens=output_tokens)],
    )


def test_trends_evaluates_a_rule_with_its_own_signal_not_as_a_success_rate(
    tmp_path: Path, packaged: Thresholds
) -> None:
    """A bottleneck rule on tokens per run flags the token-hungry operation, nothing else.

    trends used to compute every signal other than the mean duration as the success rate: this
    rule then compared execute's 100 % and review's 40 % with 100k tokens and flagged nothing.
    """
    archive = tmp_path / "archive"
    heavy, light = usage(150_000, 50_000), usage(1_000, 500)
    write_record(
        archive, rec("1", "execute", success=5, failure=0, status="completed", usage=heavy)
    )
    write_record(archive, rec("2", "review", success=2, failure=3, status="partial", usage=light))
    tokens = Bottleneck(
        name="token_hungry",
        signal="tokens_per_run",
        comparison=">",
        threshold=100_000,
        summary="{operation} uses many tokens",
        recommendation="Cache {operation}'s prompts",
    )
    thresholds = packaged.model_copy(update={"bottlenecks": [tokens]})
    with ArchiveIndex(archive, db_path=tmp_path / "index.db") as index:
        index.refresh()
        report = compute_trends(index, thresholds)
    assert [(b.name, b.operation, b.value) for b in report.bottlenecks] == [
        ("token_hungry", "execute", 200_000.0)
    ]
    assert report.bottlenecks[0].recommendation == (
        "Cache execute's prompts (200,000 input + output tokens over 1 runs)"
    )


def test_every_signal_alert_names_the_command_that_reproduces_its_figure(
    packaged: Thresholds,
) -> None:
    week = packaged.model_copy(update={"window": "2w"})
    specs = [s for s in alert_specs(week) if s.recorded is not None]
    assert len(specs) == len(packaged.bottlenecks) + len(packaged.triggers)
    for spec in specs:
        assert f"`{trends_command('2w')}`" in spec.description
        assert "--since 2w" in spec.description
