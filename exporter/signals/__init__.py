"""The alert signals and their thresholds (mean duration > 600 s, success rate < 90 %, ...),
kept once as data and shared by ``trends``, the Prometheus rules and the Grafana alerts.

May import :mod:`exporter.util` only.
"""
