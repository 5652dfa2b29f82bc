"""Prometheus: the archive as metrics (``serve``'s collector and HTTP server, the Pushgateway
push, ``backfill``), running tasks from heartbeat files, and the rules generated from the
signals.

Owns every Prometheus family's values and the PromQL. May import :mod:`exporter.index`,
:mod:`exporter.archive`, :mod:`exporter.signals`, :mod:`exporter.util` and the metric contract
(:mod:`instrumentation.contract`).
"""
