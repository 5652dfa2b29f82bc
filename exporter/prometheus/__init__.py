"""The archive as Prometheus metrics: collector, HTTP server, backfill, rules and PromQL."""
