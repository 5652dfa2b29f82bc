"""Every file the thresholds shape: the Prometheus rule file and the Grafana files.

A change of thresholds (``exporter/data/thresholds.yaml``, ``BATCH_METRICS_THRESHOLDS`` or
``--thresholds``) has to reach all of them, or alerts and dashboards judge by other numbers
than ``trends``. ``batch-metrics rules --config-dir DIR`` writes or checks them together;
``stack`` uses them in place of stale copies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from exporter import grafana
from exporter.prometheus.rules import render_rules
from exporter.signals.thresholds import Thresholds

__all__ = ["RULES_FILE", "threshold_files"]

# Where the Prometheus rule file is, relative to a configuration directory (a clone's root,
# or a directory `stack --init` wrote).
RULES_FILE: Final = Path("prometheus/rules/batch-metrics.rules.yml")


def threshold_files(thresholds: Thresholds) -> dict[str, str]:
    """Path relative to a configuration directory -> the text ``thresholds`` give it."""
    return {str(RULES_FILE): render_rules(thresholds), **grafana.render(thresholds)}
