"""Loader for the bottleneck thresholds shared by trends, Prometheus rules and Grafana alerts."""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from exporter.util.datafile import load_data_file
from exporter.util.settings import path_setting

__all__ = [
    "ENV_VAR",
    "Bottleneck",
    "Thresholds",
    "Trigger",
    "load_thresholds",
]

ENV_VAR: Final = "BATCH_METRICS_THRESHOLDS"

Signal = Literal["mean_duration_seconds", "success_rate"]
TriggerSignal = Literal["tokens_per_run", "cost_usd_per_run"]


class _Rule(BaseModel):
    """``signal comparison threshold`` flags an operation; text templates use ``{operation}``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    comparison: Literal[">", "<"]
    threshold: float
    for_: str = Field(default="5m", alias="for", pattern=r"^[0-9]+[smhdw]$")
    severity: Literal["info", "warning", "critical"] = "warning"
    summary: str
    recommendation: str

    def flags(self, value: float) -> bool:
        """Whether ``value`` of this rule's signal is a bottleneck."""
        return value > self.threshold if self.comparison == ">" else value < self.threshold


class Bottleneck(_Rule):
    """One bottleneck rule of the seed's trend analysis (mean duration, success rate)."""

    signal: Signal


class Trigger(_Rule):
    """A decision-framework trigger Prometheus can watch (tokens or cost per operation run)."""

    signal: TriggerSignal


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    window: str = Field(pattern=r"^[0-9]+[smhdw]$")
    bottlenecks: list[Bottleneck]
    triggers: list[Trigger] = Field(default_factory=list)
    stalled_heartbeat_seconds: float = Field(gt=0)


def load_thresholds(path: Path | None = None) -> Thresholds:
    """Load thresholds from ``path``, else ``$BATCH_METRICS_THRESHOLDS``, else the packaged file."""
    if path is None:
        path = path_setting("THRESHOLDS")
    return load_data_file(Thresholds, "thresholds.yaml", path, kind="thresholds")
