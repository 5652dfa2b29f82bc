"""batch-metrics exporter: the OpenTelemetry SDK side, the archive, Prometheus and the CLI.

Call :func:`configure` once in the orchestrator's process; each batch run then lands as one
record in the archive (``.ce/completed-batches/`` by default)::

    import exporter
    telemetry = exporter.configure(".ce/completed-batches")
    ...  # run batches with instrumentation.batch(...)
    telemetry.shutdown()

The SDK is imported on first use of ``configure``/``Telemetry``, so ``import exporter.cli`` and
the report commands do not pay for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from exporter.sdk.configure import ConfigurationError, Telemetry, configure

__all__ = ["ConfigurationError", "Telemetry", "configure"]

_LAZY = {name: "exporter.sdk.configure" for name in __all__}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'exporter' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
