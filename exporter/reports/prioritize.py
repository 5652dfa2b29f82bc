"""The seed's Phase-2 decision framework, executable: candidates scored against the archive.

Candidates, their triggers, impact levels and effort are data (``exporter/data/
candidates.yaml``, or a user's copy). Each trigger compares one archive signal with a
threshold; a fired trigger may set the impact from the signal's value (``impact_bands``).
``score = impact points x (effort_max + 1 - effort)``. Candidates whose triggers fire rank
first (by score, then lower effort); the others follow as "not indicated by the data".
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from exporter.index.rollups import OPERATION_TOTALS
from exporter.index.store import ArchiveIndex, RecordFilter
from exporter.signals.catalog import SIGNALS, OperationFigures
from exporter.util.datafile import load_data_file

__all__ = [
    "Candidate",
    "Framework",
    "RankedCandidate",
    "Signals",
    "load_framework",
    "measure_signals",
    "rank",
    "render_plan",
]

Impact = Literal["high", "medium", "low"]
Signal = Literal[
    "tokens_per_batch",
    "cost_per_batch",
    "success_rate",
    "repeated_run_share",
    "mean_duration_seconds",
    "none",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImpactBand(_Strict):
    above: float | None = None
    below: float | None = None
    impact: Impact

    def matches(self, value: float) -> bool:
        return (self.above is None or value > self.above) and (
            self.below is None or value < self.below
        )


class Trigger(_Strict):
    signal: Signal
    comparison: Literal[">", "<"]
    threshold: float
    note: str | None = None
    impact_bands: list[ImpactBand] = Field(default_factory=list)

    def fires(self, value: float | None) -> bool:
        if value is None:
            return False
        return value > self.threshold if self.comparison == ">" else value < self.threshold


class Candidate(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str
    impact: Impact
    effort: int = Field(ge=1)
    why: str = ""
    triggers: list[Trigger] = Field(min_length=1)


class Scoring(_Strict):
    impact_points: dict[Impact, int]
    effort_max: int = Field(ge=1)
    priority_bands: dict[Literal["high", "medium"], float]


class Framework(_Strict):
    scoring: Scoring
    candidates: list[Candidate]

    @model_validator(mode="after")
    def _consistent(self) -> Framework:
        for c in self.candidates:
            if c.effort > self.scoring.effort_max:
                raise ValueError(f"{c.id}: effort {c.effort} > effort_max")
        ids = [c.id for c in self.candidates]
        if len(ids) != len(set(ids)):
            raise ValueError("candidate ids must be unique")
        return self

    def score(self, impact: Impact, effort: int) -> int:
        return self.scoring.impact_points[impact] * (self.scoring.effort_max + 1 - effort)

    def priority(self, score: float) -> str:
        bands = self.scoring.priority_bands
        return "high" if score >= bands["high"] else "medium" if score >= bands["medium"] else "low"


def load_framework(path: Path | None = None) -> Framework:
    """The candidates file at ``path``, or the one shipped with the package."""
    return load_data_file(Framework, "candidates.yaml", path, kind="candidates")


class Signals(BaseModel):
    """What the archive says, with the evidence behind each value (one line each)."""

    values: dict[str, float | None]
    evidence: dict[str, str]
    records: int


# a run's tokens, and whether it reported any, as the trend report counts them
_TOKENS: Final = OPERATION_TOTALS.measure("total_tokens").expr
_TOKENS_SEEN: Final = OPERATION_TOTALS.measure("runs_with_tokens").expr
_BATCH_SQL: Final = f"""
SELECT COUNT(*), AVG(tokens), COUNT(cost), AVG(cost) FROM (
  SELECT f.batch_id,
         SUM({_TOKENS}) FILTER (WHERE {_TOKENS_SEEN}) AS tokens,
         SUM(f.estimated_cost) AS cost
  FROM files f WHERE {{where}} GROUP BY f.batch_id)
"""  # noqa: S608 (constant fragments)
_REPEATS_SQL: Final = """
SELECT COUNT(*), SUM(runs > 1) FROM (
  SELECT COUNT(*) AS runs FROM files f WHERE {where} GROUP BY f.batch_id, f.operation)
"""


def measure_signals(index: ArchiveIndex, where: RecordFilter | None = None) -> Signals:
    """Every signal the framework knows, from SQL aggregates over the archive index."""
    values: dict[str, float | None] = dict.fromkeys(
        ("tokens_per_batch", "cost_per_batch", "success_rate", "repeated_run_share"),
        None,
    )
    values["mean_duration_seconds"] = values["none"] = None
    evidence: dict[str, str] = {"none": "not measurable from the archive"}
    (batches, tokens, priced, cost) = index.select(_BATCH_SQL, where=where)[0]
    if tokens is not None:
        values["tokens_per_batch"] = tokens
        evidence["tokens_per_batch"] = f"mean {tokens:,.0f} tokens per batch over {batches}"
    if cost is not None:
        values["cost_per_batch"] = cost
        evidence["cost_per_batch"] = f"mean ${cost:.2f} per batch over {priced} priced batches"
    records = 0
    worst: tuple[float, str, int, int] | None = None
    slowest: tuple[float, str] | None = None
    for row in index.select(OPERATION_TOTALS.scan_sql(), where=where):
        ops = dict(zip(OPERATION_TOTALS.columns, row, strict=True))
        op, success, total = ops["operation"], ops["success"], ops["items"]
        records += ops["rows"]
        figures = OperationFigures(
            runs=ops["rows"],
            timed_runs=ops["durations"],
            duration_seconds=ops["duration_seconds"],
            items=total,
            success=success,
            failure=ops["failure"],
            partial=ops["partial"],
            tokens=ops["input_tokens"] + ops["output_tokens"],
            cost_usd=ops["cost_usd"] if ops["runs_priced"] else 0.0,
        )
        # the alert signals' own definitions (exporter/signals/catalog.py), worst operation
        rate = SIGNALS["success_rate"].evaluate(figures)
        if rate is not None and (worst is None or rate < worst[0]):
            worst = (rate, op, success, total)
        mean = SIGNALS["mean_duration_seconds"].evaluate(figures)
        if mean is not None and (slowest is None or mean > slowest[0]):
            slowest = (mean, op)
    if worst is not None:
        values["success_rate"] = worst[0]
        evidence["success_rate"] = (
            f"{worst[1]}: {worst[2]} of {worst[3]} items succeeded ({worst[0]:.1%})"
        )
    if slowest is not None:
        values["mean_duration_seconds"] = slowest[0]
        evidence["mean_duration_seconds"] = f"{slowest[1]}: mean {slowest[0]:.0f}s"
    pairs, repeated = index.select(_REPEATS_SQL, where=where)[0]
    if pairs:
        values["repeated_run_share"] = (repeated or 0) / pairs
        evidence["repeated_run_share"] = (
            f"{repeated or 0} of {pairs} batch operations ran more than once"
        )
    return Signals(values=values, evidence=evidence, records=records)


class TriggerResult(BaseModel):
    signal: str
    condition: str
    value: float | None
    fired: bool
    evidence: str


class RankedCandidate(BaseModel):
    rank: int
    id: str
    name: str
    indicated: bool  # at least one trigger fired
    impact: Impact
    impact_source: Literal["declared", "data"]
    effort: int
    score: int
    priority: str
    why: str
    triggers: list[TriggerResult]


def _impact(
    framework: Framework, candidate: Candidate, results: list[tuple[Trigger, float | None, bool]]
) -> tuple[Impact, bool]:
    """The highest impact a fired trigger's first matching band gives (and True), else the
    declared one (and False)."""
    from_data = [
        next((band.impact for band in trigger.impact_bands if band.matches(value)), None)
        for trigger, value, fired in results
        if fired and value is not None
    ]
    levels = [i for i in from_data if i is not None]
    if not levels:
        return candidate.impact, False
    return max(levels, key=lambda i: framework.scoring.impact_points[i]), True


def rank(framework: Framework, signals: Signals) -> list[RankedCandidate]:
    """Candidates in plan order: indicated first, then by score, then by lower effort."""
    scored = []
    for c in framework.candidates:
        checked = [
            (t, signals.values.get(t.signal), t.fires(signals.values.get(t.signal)))
            for t in c.triggers
        ]
        impact, from_data = _impact(framework, c, checked)
        score = framework.score(impact, c.effort)
        scored.append((c, checked, impact, score, from_data))
    scored.sort(key=lambda s: (not any(f for _, _, f in s[1]), -s[3], s[0].effort, s[0].id))
    return [
        RankedCandidate(
            rank=n,
            id=c.id,
            name=c.name,
            indicated=any(fired for _, _, fired in checked),
            impact=impact,
            impact_source="data" if from_data else "declared",
            effort=c.effort,
            score=score,
            priority=framework.priority(score),
            why=c.why,
            triggers=[
                TriggerResult(
                    signal=t.signal,
                    condition=t.note or f"{t.signal} {t.comparison} {t.threshold:g}",
                    value=value,
                    fired=fired,
                    evidence=signals.evidence.get(t.signal, "no data in the archive"),
                )
                for t, value, fired in checked
            ],
        )
        for n, (c, checked, impact, score, from_data) in enumerate(scored, start=1)
    ]


def render_plan(ranked: list[RankedCandidate], signals: Signals) -> str:
    """The ranked plan as markdown, with the evidence behind each score."""
    lines = ["# Phase 2 Plan", f"\nFrom {signals.records} archived runs.", ""]
    lines += [
        "| Rank | Candidate | Indicated | Impact | Effort | Score | Priority |",
        "|---:|---|---|---|---:|---:|---|",
    ]
    for r in ranked:
        impact = r.impact + (" (from data)" if r.impact_source == "data" else "")
        lines.append(
            f"| {r.rank} | {r.name} | {'yes' if r.indicated else 'no'} | {impact} | "
            f"{r.effort} | {r.score} | {r.priority} |"
        )
    for r in ranked:
        lines.append(f"\n## {r.rank}. {r.name} (score {r.score}, {r.priority})")
        lines.append(f"- Why: {r.why}")
        for t in r.triggers:
            mark = "fired" if t.fired else "not fired"
            lines.append(f"- Trigger `{t.condition}`: {mark}; {t.evidence}")
    return "\n".join(lines) + "\n"
