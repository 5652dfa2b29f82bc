"""The alert signals and their thresholds (mean duration > 600 s, success rate < 90 %, ...),
declared once and shared by ``trends``, the Prometheus rules and the Grafana alerts:
``catalog`` (each signal's PromQL, recording rule and Python evaluator), ``alerts`` (every
alert, engine-neutral: signals, tasks, exporter health, watchdog), ``thresholds`` (the data).

May import :mod:`exporter.util` and the metric contract (:mod:`instrumentation.contract`) only.
"""
