"""The OpenTelemetry SDK side: :func:`configure`, the span processor that turns a finished
batch into one archived record, and the span-tree assembly.

May import :mod:`exporter.archive`, :mod:`exporter.util` and :mod:`instrumentation`.
"""
