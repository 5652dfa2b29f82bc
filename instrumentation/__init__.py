"""batch-metrics instrumentation (OpenTelemetry API only)."""
