"""``trends --format html``: the page's figures equal the JSON and markdown reports', its charts
add up to the same totals, it fetches nothing, and it stays small."""

from __future__ import annotations

import json
import shutil
import sys
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from exporter.archive.files import write_record
from exporter.archive.model import ModelUsage
from exporter.cli.main import main
from exporter.index.store import ArchiveIndex, RecordFilter
from exporter.prometheus.series import operation_outcome
from exporter.reports.html import CSP
from exporter.reports.timeline import MAX_POINTS, PERIODS, compute_timeline, period_for
from exporter.reports.trends import compute_trends
from exporter.signals.thresholds import load_thresholds
from tests.support.generated_archive import write_archive
from tests.support.records import T0, rec

pytest.importorskip("matplotlib")  # the html extra; make setup installs it


class _Page(HTMLParser):
    """The page's figure cells, its tags and every attribute that could fetch something."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.figures: dict[str, tuple[str, str]] = {}  # path -> (data-value, text)
        self.tags: set[str] = set()
        self.links: list[tuple[str, str, str]] = []
        self.csp: str | None = None
        self.sections: list[str] = []
        self._open: tuple[str, str] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        a = {k: v or "" for k, v in attrs}
        for name in ("src", "href", "xlink:href", "srcset", "action", "data", "poster"):
            if name in a:
                self.links.append((tag, name, a[name]))
        if tag == "meta" and a.get("http-equiv") == "Content-Security-Policy":
            self.csp = a["content"]
        if tag == "section":
            self.sections.append(a.get("id", ""))
        if "data-figure" in a:
            self._open = (a["data-figure"], a["data-value"])
            self._text = []

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag in ("td", "strong"):
            path, value = self._open
            self.figures[path] = (value, "".join(self._text).strip())
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open:
            self._text.append(data)


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def _at(data: Any, path: str) -> Any:
    for part in path.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["trends", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("html") / "archive"
    write_archive(path, 300, every_nth_without=7)
    return path


@pytest.fixture(scope="module")
def page(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The page over the whole archive, rendered once through the CLI."""
    out = tmp_path_factory.mktemp("page")
    report = out / "trend-analysis-report.md"
    assert (
        main(["trends", "--archive", str(archive), "--format", "html", "--report", str(report)])
        == 0
    )
    return report.with_suffix(".html").read_text(encoding="utf-8")


def test_page_figures_equal_json_and_markdown(archive, page, capsys):
    _, as_json, _ = _cli(capsys, "--archive", str(archive), "--format", "json", "--no-save")
    _, markdown, _ = _cli(capsys, "--archive", str(archive), "--no-save")
    report = json.loads(as_json)
    figures = _parse(page).figures
    # every operation shows its durations, success rate, items, tokens, cost and efficiency
    for op in report["operations"]:
        for name in ("durations.mean", "durations.p95", "success_rate", "items.total"):
            assert f"operations.{op}.{name}" in figures
        for name in ("tokens.total_tokens", "cost.cost_usd", "parallel.mean_efficiency"):
            assert f"operations.{op}.{name}" in figures
    assert len(report["bottlenecks"]) > 0
    assert "bottlenecks.0.value" in figures
    assert "errors.0.count" in figures
    assert "models.0.input_tokens" in figures
    for path, (value, _text) in figures.items():
        expected = _at(report, path)
        if expected is None:
            assert value == "", path
        else:
            assert float(value) == pytest.approx(expected, rel=1e-12), path
    # as the markdown prints them
    labels = {"mean": "Mean", "median": "Median", "p95": "p95"}
    for op in report["operations"]:
        section = markdown.split(f"### {op.capitalize()}\n", 1)[1]
        for key, label in labels.items():
            assert f"- {label}: {figures[f'operations.{op}.durations.{key}'][1]}" in section
        rate = figures[f"operations.{op}.success_rate"][1]
        assert f"### {op.capitalize()}\n- Success Rate: {rate}\n" in markdown
        assert f" | {figures[f'operations.{op}.cost.cost_usd'][1]} | " in markdown
    for n, bottleneck in enumerate(report["bottlenecks"]):
        assert bottleneck["recommendation"] in page
        assert f"{bottleneck['value']:.4g}" in figures[f"bottlenecks.{n}.value"][1]


def test_page_is_self_contained(page):
    parsed = _parse(page)
    assert parsed.csp == CSP
    assert "default-src 'none'" in CSP
    assert not parsed.tags & {"script", "link", "iframe", "object", "embed", "img", "image"}
    assert not [link for link in parsed.links if not link[2].startswith("#")]
    assert "url(" not in page.replace("url(#", "")  # only references inside one SVG
    assert "@import" not in page
    assert page.count("<svg") >= 4 * 6  # per operation: durations, rate, outcomes, tokens, ...
    assert "600 s" in page
    assert "90%" in page


def test_saved_beside_the_markdown_report(archive, capsys, tmp_path):
    report = tmp_path / "out" / "trend-analysis-report.md"
    one = ("--archive", str(archive), "--operation", "review", "--format", "html")
    code, out, err = _cli(capsys, *one, "--report", str(report))
    assert code == 0
    assert out == ""
    page = report.with_suffix(".html")
    assert page.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert report.read_text(encoding="utf-8").startswith("# Batch Operations Trend Analysis")
    assert f"HTML report saved to {page}" in err
    elsewhere = tmp_path / "elsewhere.html"
    code, out, _ = _cli(capsys, *one, "--html", str(elsewhere))
    assert code == 0
    assert out == ""
    assert elsewhere.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    code, out, _ = _cli(capsys, *one, "--html", "-")
    assert out.startswith("<!DOCTYPE html>")


def test_selection_applies(archive, capsys):
    _, page, _ = _cli(
        capsys,
        *("--archive", str(archive), "--format", "html", "--no-save"),
        *("--operation", "execute", "--since", "2025-01-10"),
    )
    _, as_json, _ = _cli(
        capsys,
        *("--archive", str(archive), "--format", "json", "--no-save"),
        *("--operation", "execute", "--since", "2025-01-10"),
    )
    report = json.loads(as_json)
    parsed = _parse(page)
    assert [s for s in parsed.sections if s.startswith("op-")] == ["op-execute"]
    assert int(parsed.figures["records"][0]) == report["records"] < 300 // 4
    assert "operation execute" in page
    assert "runs since 2025-01-10" in page


def test_timeline_adds_up_to_the_report(archive, tmp_path):
    thresholds = load_thresholds()
    where = RecordFilter(since=(T0 - timedelta(days=3650)).timestamp())
    with ArchiveIndex(archive, tmp_path / "ix.sqlite") as index:
        index.refresh()
        report = compute_trends(index, thresholds, where)
        timeline = compute_timeline(index, where)
        summaries = index.summaries()
    for op, trend in report.operations.items():
        points = timeline.operations[op]
        assert trend.durations is not None
        assert sum(p.runs for p in points) == trend.runs
        assert sum(p.items for p in points) == trend.items.total
        assert sum(p.success_items for p in points) == trend.items.success
        assert sum(p.timed_runs for p in points) == trend.durations.count
        assert sum(p.duration_sum for p in points) == pytest.approx(
            trend.durations.count * trend.durations.mean
        )
        assert max(p.duration_max for p in points if p.duration_max) == trend.durations.max
        outcomes: dict[str, int] = {"success": 0, "partial": 0, "failure": 0}
        for s in summaries:
            if s.operation == op:
                outcomes[operation_outcome(s)] += 1
        assert outcomes == {
            "success": sum(p.success_runs for p in points),
            "partial": sum(p.partial_runs for p in points),
            "failure": sum(p.failure_runs for p in points),
        }
    for m in report.models:
        used = timeline.models[m.operation][m.model]
        assert sum(u.input_tokens for u in used) == m.input_tokens
        assert sum(u.output_tokens for u in used) == m.output_tokens
        priced = [u.cost_usd for u in used if u.cost_usd is not None]
        assert (sum(priced) if priced else None) == pytest.approx(m.cost_usd)


def test_outcomes_follow_status_then_counts(tmp_path):
    """The SQL outcome rule is series.operation_outcome, for every status and none."""
    archive = tmp_path / "a"
    cases = [
        ("completed", 5, 5, 0, 0),
        ("partial", 5, 3, 1, 1),
        ("failed", 5, 0, 5, 0),
        ("crashed", 5, 4, 0, 0),
        (None, 5, 5, 0, 0),
        (None, 5, 2, 3, 0),
        (None, 5, 0, 4, 1),
        (None, 5, 0, 5, 0),
        (None, None, None, None, None),
        (None, 0, 0, 0, 0),
    ]
    for n, (status, total, success, failure, partial) in enumerate(cases):
        write_record(
            archive,
            rec(
                str(n),
                status=status,
                total=total,
                success=success,
                failure=failure,
                partial=partial,
                start=T0 + timedelta(days=n),
            ),
        )
    with ArchiveIndex(archive, tmp_path / "ix.sqlite") as index:
        index.refresh()
        timeline = compute_timeline(index)
        expected = [operation_outcome(s) for s in index.summaries()]
    got = []
    for p in timeline.operations["execute"]:
        got += ["success"] * p.success_runs + ["partial"] * p.partial_runs
        got += ["failure"] * p.failure_runs
    assert sorted(got) == sorted(expected)
    assert len(timeline.operations["execute"]) == len(cases)  # one run a day, daily periods


def test_periods_keep_charts_small():
    hour, day = 3600, 86_400
    assert period_for(0, 10 * hour) == PERIODS[0]
    assert period_for(0, 30 * day) == (21_600, "6 hours")
    assert period_for(0, 150 * day) == (day, "day")
    assert period_for(0, 10 * 365 * day)[1] == "30 days"
    for days in (1, 10, 100, 1000, 5000):
        seconds, _ = period_for(0, days * day)
        assert days * day // seconds + 1 <= MAX_POINTS or seconds == PERIODS[-1][0]


def test_page_size_is_bounded(tmp_path, capsys):
    """A long archive (800 hourly runs: 6-hour periods, 134 points a chart) stays small; the
    size depends on the number of periods (at most MAX_POINTS), not of runs (docs: 1.1 MiB
    at 100k runs)."""
    write_archive(tmp_path / "a", 800)
    _, page, _ = _cli(capsys, "--archive", str(tmp_path / "a"), "--format", "html", "--no-save")
    assert "one point per 6 hours" in page
    assert len(page.encode()) < 2 * 1024 * 1024


def test_empty_selection_is_a_page(archive, capsys):
    code, page, err = _cli(
        capsys, "--archive", str(archive), "--format", "html", "--no-save", "--since", "2099-01-01"
    )
    assert code == 0
    assert "No archived runs match the selection." in page
    assert "no archived runs match" in err


def test_missing_matplotlib_is_one_line(archive, capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    report = tmp_path / "r.md"
    code, out, err = _cli(
        capsys, "--archive", str(archive), "--format", "html", "--report", str(report)
    )
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert "pip install 'batch-metrics[html]'" in err
    assert not report.exists()


def test_unpriced_models_draw_no_cost_line(tmp_path, capsys):
    archive = tmp_path / "a"
    for n in range(3):
        write_record(
            archive,
            rec(
                str(n),
                start=T0 + timedelta(days=n),
                models=[
                    ModelUsage(
                        model="mystery-model",
                        input_tokens=1000,
                        output_tokens=100,
                        cost_usd=None,
                        cost_source="unpriced",
                    )
                ],
            ),
        )
    _, page, _ = _cli(capsys, "--archive", str(archive), "--format", "html", "--no-save")
    assert "no priced runs" in page
    assert "mystery-model" in page  # in the tokens chart and the models table
    assert ">unpriced<" in page


def test_notes_say_which_records_were_read_elsewhere(tmp_path, capsys):
    """As the markdown's Notes: a record another tool wrote (tests/archive/fixtures)."""
    fixture = Path(__file__).parents[1] / "archive" / "fixtures" / "batch-PRP-48-generate.json"
    archive = tmp_path / "a"
    archive.mkdir()
    shutil.copy(fixture, archive / fixture.name)
    _, page, _ = _cli(capsys, "--archive", str(archive), "--format", "html", "--no-save")
    notes = page[page.index('<section id="notes">') :]
    assert "1 record(s) had no figure in the seed's place" in notes
    assert f"{fixture.name} (token_usage.total, token_usage.estimated_cost_usd)" in notes
    _, markdown, _ = _cli(capsys, "--archive", str(archive), "--no-save")
    assert "## Notes" in markdown
