# syntax=docker/dockerfile:1
# The batch-metrics exporter (`batch-metrics serve`): a small, non-root image that reads an
# orchestrator's .ce/ directory (mounted read-only at /data/ce) and serves /metrics on :9477.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/batch-metrics
COPY pyproject.toml README.md ./
COPY instrumentation ./instrumentation
COPY exporter ./exporter
# The stack's files ship in the wheel as package data (pyproject.toml force-include).
COPY docker-compose.yml .env.example ./
COPY prometheus ./prometheus
COPY alertmanager ./alertmanager
COPY grafana ./grafana
COPY otel-collector ./otel-collector
COPY tempo ./tempo
RUN /opt/batch-metrics/bin/pip install . \
    && find /opt/batch-metrics -name '__pycache__' -prune -exec rm -rf {} +

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="batch-metrics" \
      org.opencontainers.image.description="Prometheus exporter for LLM-agent batch operations"
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin batch-metrics \
    && mkdir -p /var/cache/batch-metrics /data/ce \
    && chown batch-metrics:batch-metrics /var/cache/batch-metrics
COPY --from=build /opt/batch-metrics /opt/batch-metrics
ENV PATH=/opt/batch-metrics/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    XDG_CACHE_HOME=/var/cache
USER 10001:10001
EXPOSE 9477
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9477/health', timeout=4).status != 200)"]
ENTRYPOINT ["batch-metrics"]
CMD ["serve", "--archive", "/data/ce/completed-batches", "--orchestration-dir", "/data/ce/orchestration", "--bind", "0.0.0.0", "--port", "9477"]
