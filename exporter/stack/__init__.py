"""``batch-metrics stack``: Prometheus, Alertmanager, Pushgateway and ``serve`` on loopback,
from the same configuration files as the compose stack.

May import :mod:`exporter.util`.
"""
