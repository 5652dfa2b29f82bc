"""The thresholds the package ships, for tests that compare against the packaged signals."""

from __future__ import annotations

import pytest

from exporter.signals.thresholds import ENV_VAR, Thresholds, load_thresholds


def packaged_thresholds() -> Thresholds:
    """The packaged thresholds, whatever ``$BATCH_METRICS_THRESHOLDS`` says in this process."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(ENV_VAR, raising=False)
        return load_thresholds()
