"""Benchmarks of batch-metrics, run on demand (``python -m benchmarks``; see README.md)."""

from __future__ import annotations

import compileall
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def compile_bytecode() -> None:
    """Write the packages' bytecode, as ``pip install`` does, before timing fresh processes.

    Where ``PYTHONDONTWRITEBYTECODE`` is set (as on our build machines) a checkout never gets
    its ``.pyc`` files, and every process started from it compiles 30-odd modules first
    (~0.05 s): a cost no installed copy pays.
    """
    for package in ("exporter", "instrumentation"):
        compileall.compile_dir(REPO / package, quiet=1)
