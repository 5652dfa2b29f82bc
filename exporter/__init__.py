"""batch-metrics exporter: the OpenTelemetry SDK side, the archive, Prometheus and the CLI."""
