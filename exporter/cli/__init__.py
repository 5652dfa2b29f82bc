"""The ``batch-metrics`` command line: parsing, shared options, one module per command.

Owns: argument parsing, settings from the environment, printing and exit codes.
May import every other part of :mod:`exporter`; nothing imports it.
"""

from __future__ import annotations

from exporter.cli.main import main

__all__ = ["main"]
