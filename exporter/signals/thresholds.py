"""Loader for the bottleneck thresholds shared by trends, Prometheus rules and Grafana alerts."""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from exporter.signals.catalog import SIGNALS
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


class _Rule(BaseModel):
    """``signal comparison threshold`` flags an operation; text templates use ``{operation}``.

    ``signal`` is a key of :data:`exporter.signals.catalog.SIGNALS`, which says how every view
    computes it.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    signal: str
    comparison: Literal[">", "<"]
    threshold: float
    for_: str = Field(default="5m", alias="for", pattern=r"^[0-9]+[smhdw]$")
    severity: Literal["info", "warning", "critical"] = "warning"
    summary: str
    recommendation: str

    @field_validator("signal")
    @classmethod
    def _known_signal(cls, value: str) -> str:
        if value not in SIGNALS:
            raise ValueError(f"unknown signal {value!r}; known: {', '.join(SIGNALS)}")
        return value

    def flags(self, value: float) -> bool:
        """Whether ``value`` of this rule's signal is a bottleneck."""
        return value > self.threshold if self.comparison == ">" else value < self.threshold


class Bottleneck(_Rule):
    """One bottleneck rule of the seed's trend analysis (mean duration, success rate)."""


class Trigger(_Rule):
    """A decision-framework trigger Prometheus can watch (tokens or cost per operation run)."""


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    window: str = Field(pattern=r"^[0-9]+[smhdw]$")
    bottlenecks: list[Bottleneck]
    triggers: list[Trigger] = Field(default_factory=list)
    stalled_heartbeat_seconds: float = Field(gt=0)
    abandoned_heartbeat_seconds: float = Field(default=3600, gt=0)
    stale_scan_seconds: float = Field(default=900, gt=0)


def load_thresholds(path: Path | None = None) -> Thresholds:
    """Load thresholds from ``path``, else ``$BATCH_METRICS_THRESHOLDS``, else the packaged file."""
    if path is None:
        path = path_setting("THRESHOLDS")
    return load_data_file(Thresholds, "thresholds.yaml", path, kind="thresholds")
