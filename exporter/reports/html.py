"""The trend report as one self-contained HTML page with charts (``trends --format html``).

The page shows the figures of :class:`~exporter.reports.trends.TrendReport` (the same ones the
markdown and JSON reports give, formatted as the markdown does) and, per operation, charts over
time from :mod:`exporter.reports.timeline`, drawn by :mod:`exporter.reports.charts` as inline
SVG. It loads nothing: no script, stylesheet, font or image comes from anywhere but the page,
and its Content-Security-Policy forbids the browser to fetch any, so it opens offline and from a
mail attachment alike. Every figure in a table carries ``data-figure`` (its path in the JSON
report) and ``data-value`` (the unformatted number), so tests and scripts can check it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from html import escape
from typing import Final

from exporter.reports.charts import Charts
from exporter.reports.results import OperationTrend, TrendReport
from exporter.reports.timeline import Timeline
from exporter.signals.thresholds import Thresholds

__all__ = ["CSP", "render_html"]

# Nothing may be fetched: styles are inline, images are inline SVG, there are no scripts.
CSP: Final = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
TOP_STAGES: Final = 8
TOP_ERRORS: Final = 8

_STYLE: Final = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
margin:0 auto;max-width:1320px;padding:1rem 1.5rem;color:#1f2933;background:#fff}
h1{font-size:1.6rem;margin:.2rem 0}h2{font-size:1.25rem;margin:1.6rem 0 .5rem;
border-bottom:2px solid #e4e7eb;padding-bottom:.2rem}h3{font-size:1rem;margin:1rem 0 .4rem}
.meta,.note{color:#52606d;font-size:.9rem;margin:.2rem 0}
.note{background:#f5f7fa;border-left:3px solid #9aa5b1;padding:.4rem .6rem}
table{border-collapse:collapse;font-size:.88rem;margin:.4rem 0}
th,td{padding:.25rem .6rem;border-bottom:1px solid #e4e7eb;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(600px,1fr));gap:.6rem}
.grid figure{margin:0;border:1px solid #e4e7eb;border-radius:4px;padding:.2rem}
figure svg{width:100%;height:auto;display:block}
tr.bottleneck td:first-child{border-left:4px solid #c62828}
tr.bottleneck.warning td:first-child{border-left-color:#f9a825}
.ok{color:#2e7d32}.bad{color:#c62828;font-weight:600}
.figures{display:flex;flex-wrap:wrap;gap:1.5rem;align-items:flex-start;margin-bottom:.6rem}
caption{text-align:left;font-weight:600;font-size:.85rem;color:#52606d;padding:.2rem 0}
p.bad{margin:.2rem 0}
"""


def _seconds(value: float) -> str:
    return f"{value:.0f}s"


def _rate(value: float | None) -> str:
    return "no data (no items recorded)" if value is None else f"{value:.1%}"


def _usd(value: float) -> str:
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"


def _cell(path: str, value: float | None, text: str) -> str:
    """A table cell holding one figure of the JSON report (``path`` names it there)."""
    raw = "" if value is None else repr(float(value))
    return f'<td class="n" data-figure="{escape(path)}" data-value="{raw}">{escape(text)}</td>'


def _row(label: str, *cells: str) -> str:
    return f"<tr><th>{escape(label)}</th>{''.join(cells)}</tr>"


def _table(title: str, rows: list[str]) -> str:
    return f"<table><caption>{escape(title)}</caption>{''.join(rows)}</table>"


def _figures_tables(op: str, t: OperationTrend) -> str:
    """The operation's figures in three small tables: runs and durations, items, cost."""
    at = f"operations.{op}"
    runs = [
        _row("Runs", _cell(f"{at}.runs", t.runs, f"{t.runs:,}")),
        _row("Batches", _cell(f"{at}.batches", t.batches, f"{t.batches:,}")),
    ]
    d = t.durations
    if d is not None:
        runs += [
            _row("Mean duration", _cell(f"{at}.durations.mean", d.mean, _seconds(d.mean))),
            _row("Median", _cell(f"{at}.durations.median", d.median, _seconds(d.median))),
            _row("p95", _cell(f"{at}.durations.p95", d.p95, _seconds(d.p95))),
            _row("Shortest", _cell(f"{at}.durations.min", d.min, _seconds(d.min))),
            _row("Longest", _cell(f"{at}.durations.max", d.max, _seconds(d.max))),
        ]
    if t.runs_without_duration:
        n = t.runs_without_duration
        runs.append(_row("Without a duration", _cell(f"{at}.runs_without_duration", n, str(n))))
    i = t.items
    items = [
        _row("Success rate", _cell(f"{at}.success_rate", t.success_rate, _rate(t.success_rate))),
        _row("Items", _cell(f"{at}.items.total", i.total, f"{i.total:,}")),
        _row("Successful", _cell(f"{at}.items.success", i.success, f"{i.success:,}")),
        _row("Failed", _cell(f"{at}.items.failure", i.failure, f"{i.failure:,}")),
        _row("Partial", _cell(f"{at}.items.partial", i.partial, f"{i.partial:,}")),
    ]
    tok, cost = t.tokens, t.cost
    spend = [
        _row(
            "Tokens", _cell(f"{at}.tokens.total_tokens", tok.total_tokens, f"{tok.total_tokens:,}")
        ),
        _row("Cost", _cell(f"{at}.cost.cost_usd", cost.cost_usd, _usd(cost.cost_usd))),
    ]
    if cost.mean_per_run is not None:
        mean = cost.mean_per_run
        spend.append(_row("Cost per run", _cell(f"{at}.cost.mean_per_run", mean, _usd(mean))))
    if cost.runs_unpriced:
        n = cost.runs_unpriced
        spend.append(_row("Unpriced runs", _cell(f"{at}.cost.runs_unpriced", n, str(n))))
    p = t.parallel
    if p is not None:
        eff = p.mean_efficiency
        spend.append(
            _row("Parallel efficiency", _cell(f"{at}.parallel.mean_efficiency", eff, f"{eff:.2f}x"))
        )
        if p.overall_efficiency is not None:
            eff = p.overall_efficiency
            spend.append(
                _row("… overall", _cell(f"{at}.parallel.overall_efficiency", eff, f"{eff:.2f}x"))
            )
        saved = p.seconds_saved
        spend.append(
            _row(
                "Hours saved", _cell(f"{at}.parallel.seconds_saved", saved, f"{saved / 3600:.1f} h")
            )
        )
    return (
        _table("Runs and durations", runs)
        + _table("Items", items)
        + _table("Tokens, cost, parallel stages", spend)
    )


def _figure(svg: str, caption: str) -> str:
    return f'<figure aria-label="{escape(caption)}">{svg}</figure>'


def _operation_section(
    op: str,
    *,
    t: OperationTrend,
    report: TrendReport,
    timeline: Timeline,
    charts: Charts,
    thresholds: Thresholds,
) -> str:
    points = timeline.operations.get(op, [])
    models = timeline.models.get(op, {})
    limits = {b.signal: b.threshold for b in thresholds.bottlenecks}
    figures = []
    if points:
        figures += [
            _figure(
                charts.durations(points, limits.get("mean_duration_seconds")), f"{op} durations"
            ),
            _figure(charts.success_rate(points, limits.get("success_rate")), f"{op} success rate"),
            _figure(charts.outcomes(points), f"{op} runs by outcome"),
        ]
    if models:
        figures += [
            _figure(charts.by_model(models, "tokens"), f"{op} tokens by model"),
            _figure(charts.by_model(models, "cost"), f"{op} cost by model"),
        ]
    slowest = sorted(t.stages, key=lambda s: -s.mean_seconds)[:TOP_STAGES]
    if slowest:
        figures.append(
            _figure(
                charts.bars(
                    "Slowest stages (mean seconds)",
                    [_stage(s.stage) + f" ({s.share:.0%} of stage time)" for s in slowest],
                    [s.mean_seconds for s in slowest],
                    "#6a1b9a",
                ),
                f"{op} slowest stages",
            )
        )
    errors = sorted(
        ((e.by_operation[op], e.error_type) for e in report.errors if op in e.by_operation),
        key=lambda e: (-e[0], e[1]),
    )[:TOP_ERRORS]
    if errors:
        figures.append(
            _figure(
                charts.bars(
                    "Top error types (items)",
                    [name for _, name in errors],
                    [n for n, _ in errors],
                    "#c62828",
                ),
                f"{op} top error types",
            )
        )
    flagged = "".join(
        f'<p class="bad">{escape(b.summary)}</p>' for b in report.bottlenecks if b.operation == op
    )
    return (
        f'<section id="op-{escape(op)}"><h2>{escape(op.capitalize())}</h2>{flagged}'
        f'<div class="figures">{_figures_tables(op, t)}</div>'
        f'<div class="grid">{"".join(figures)}</div></section>'
    )


def _stage(stage: int | None) -> str:
    return "unstaged" if stage is None else f"stage {stage}"


def _bottlenecks(report: TrendReport) -> str:
    parts = ['<section id="bottlenecks"><h2>Identified Bottlenecks</h2>']
    if not report.bottlenecks:
        parts.append('<p class="ok">No bottlenecks identified.</p></section>')
        return "".join(parts)
    parts.append(
        "<table><tr><th>Operation</th><th>Bottleneck</th><th>Severity</th>"
        '<th class="n">Signal</th><th>Recommendation</th></tr>'
    )
    for n, b in enumerate(report.bottlenecks):
        signal = f"{b.signal} = {b.value:.4g} ({b.comparison} {b.threshold:g})"
        parts.append(
            f'<tr class="bottleneck {escape(b.severity)}"><td>{escape(b.operation)}</td>'
            f"<td>{escape(b.name)}</td><td>{escape(b.severity)}</td>"
            + _cell(f"bottlenecks.{n}.value", b.value, signal)
            + f"<td>{escape(b.recommendation)}</td></tr>"
        )
    parts.append("</table></section>")
    return "".join(parts)


def _models(report: TrendReport) -> str:
    if not report.models:
        return ""
    rows = []
    for n, m in enumerate(report.models):
        at = f"models.{n}"
        cost = "unpriced" if m.cost_usd is None else _usd(m.cost_usd)
        if m.cost_usd is not None and m.runs_unpriced:
            cost += f" (+{m.runs_unpriced} unpriced runs)"
        rows.append(
            f"<tr><td>{escape(m.operation)}</td><td>{escape(m.model)}</td>"
            + _cell(f"{at}.runs", m.runs, f"{m.runs:,}")
            + _cell(f"{at}.input_tokens", m.input_tokens, f"{m.input_tokens:,}")
            + _cell(f"{at}.output_tokens", m.output_tokens, f"{m.output_tokens:,}")
            + _cell(f"{at}.cache_read_tokens", m.cache_read_tokens, f"{m.cache_read_tokens:,}")
            + _cell(f"{at}.cost_usd", m.cost_usd, cost)
            + "</tr>"
        )
    return (
        '<section id="models"><h2>Token Usage and Cost by Model</h2><table><tr><th>Operation</th>'
        '<th>Model</th><th class="n">Runs</th><th class="n">Input</th><th class="n">Output</th>'
        '<th class="n">Cache read</th><th class="n">Cost</th></tr>'
        f"{''.join(rows)}</table></section>"
    )


def _by_operation(counts: dict[str, int]) -> str:
    return ", ".join(f"{op} {n}" for op, n in sorted(counts.items()))


def _errors(report: TrendReport) -> str:
    if not report.errors:
        return '<section id="errors"><h2>Error Types</h2><p>No errors recorded.</p></section>'
    rows = [
        f"<tr><td class='n'>{rank}</td><td>{escape(e.error_type)}</td>"
        + _cell(f"errors.{rank - 1}.count", e.count, f"{e.count:,}")
        + f"<td>{escape(_by_operation(e.by_operation))}</td></tr>"
        for rank, e in enumerate(report.errors, start=1)
    ]
    return (
        '<section id="errors"><h2>Error Types</h2><table><tr><th class="n">Rank</th>'
        '<th>Error type</th><th class="n">Count</th><th>By operation</th></tr>'
        f"{''.join(rows)}</table></section>"
    )


def _notes(report: TrendReport) -> str:
    """The markdown report's Notes: records read from figures outside ``metrics``."""
    found = report.read_elsewhere
    if not found:
        return ""
    items = "".join(
        f"<li>{escape(name)} ({escape(', '.join(fields))})</li>" for name, fields in found.items()
    )
    return (
        f'<section id="notes"><h2>Notes</h2><p>{len(found)} record(s) had no figure in the '
        "seed's place and were read from another tool's shape outside <code>metrics</code> (a "
        f"top-level <code>token_usage</code>, a <code>status</code>):</p><ul>{items}</ul></section>"
    )


def _when(value: datetime | None) -> str:
    return "" if value is None else f"{value:%Y-%m-%d %H:%M}"


def _header(report: TrendReport, timeline: Timeline) -> Iterable[str]:
    yield "<header><h1>Batch Operations Trend Analysis</h1>"
    span = (
        f" from {_when(report.first_run)} to {_when(report.last_run)} UTC"
        if report.first_run and report.last_run
        else ""
    )
    yield f'<p class="meta">Analyzed <strong data-figure="records" data-value="{report.records}">'
    yield f"{report.records:,}</strong> batch operations{span}"
    if report.invalid_files:
        yield f" ({len(report.invalid_files)} invalid files skipped)"
    yield ".</p>"
    s = report.selection
    chosen = [
        *([f"operation {s.operation}"] if s.operation else []),
        *([f"runs since {_when(s.since)} UTC"] if s.since else []),
        *([f"the {s.recent} most recent runs"] if s.recent else []),
    ]
    yield (
        f'<p class="meta">Selection: {escape(", ".join(chosen) or "every run")}. '
        f"Archive: {escape(report.archive)}. Generated {_when(report.generated_at)} UTC.</p>"
    )
    yield (
        f'<p class="note">Charts show one point per {escape(timeline.period_name)} (UTC): '
        f"the runs that started in it, aggregated (means, sums, rates), so the page stays small "
        "at any archive size. A break in a line is a period without runs. Tables give the exact "
        "figures over every selected run, as the markdown and JSON reports do. The red dashed "
        "lines are the bottleneck thresholds of exporter/data/thresholds.yaml.</p></header>"
    )


def render_html(report: TrendReport, timeline: Timeline, thresholds: Thresholds) -> str:
    """The whole page; raises CommandError (one line) when matplotlib is not installed."""
    charts = Charts(timeline.period_seconds, timeline.period_name)
    body = [
        *_header(report, timeline),
        _bottlenecks(report),
        *(
            _operation_section(
                op, t=t, report=report, timeline=timeline, charts=charts, thresholds=thresholds
            )
            for op, t in report.operations.items()
        ),
        _models(report),
        _errors(report),
        _notes(report),
    ]
    if not report.operations:
        body.append("<p>No archived runs match the selection.</p>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Batch Operations Trend Analysis</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>\n"
    )
