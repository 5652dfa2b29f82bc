"""Push the archive's figures to a Pushgateway, for orchestrators that exit after a batch.

A short-lived orchestrator cannot be scraped, and pushing its own in-process counters would
restart them at zero with every process (a counter reset per batch, and runs lost between
pushes). :func:`push_archive` instead pushes the totals derived from the archive, the same
samples ``serve`` exposes, replacing the group each time (HTTP PUT): the values only grow as
the archive grows, and a lost push is repaired by the next one. Call it after the batch's
record is written. Scrape the gateway with ``honor_labels: true``; do not also scrape
``serve`` for the same archive, or every run counts twice.

Nothing is pushed when the archive cannot be scanned: the PUT would replace the group's
figures with none (a reset of every counter), so :class:`ScanFailedError` is raised instead and
the group keeps what the last good push put there.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry, push_to_gateway

from exporter.index.store import ArchiveIndex
from exporter.prometheus.collector import ArchiveCollector, ScanStatus

__all__ = ["DEFAULT_JOB", "ScanFailedError", "push_archive"]

DEFAULT_JOB: Final = "batch-metrics"


class ScanFailedError(RuntimeError):
    """The archive could not be scanned, so nothing was pushed; ``status`` says why."""

    def __init__(self, status: ScanStatus) -> None:
        super().__init__(f"not pushing: scanning the archive failed: {status.error}")
        self.status = status


def push_archive(
    gateway: str,
    archive: Path,
    *,
    job: str = DEFAULT_JOB,
    grouping_key: Mapping[str, str] | None = None,
    timeout: float = 10.0,
    index: ArchiveIndex | None = None,
) -> ScanStatus:
    """Push the archive's metrics to ``gateway`` (``host:port`` or URL); return the scan status.

    The group is ``job`` plus ``grouping_key`` (default: ``instance`` = this host's name, so
    hosts with archives of their own do not overwrite each other). Raises
    :class:`ScanFailedError`, pushing nothing, when the archive cannot be scanned, and OSError
    (including urllib's errors) when the gateway cannot be reached or refuses the push.
    """
    own_index = index is None
    idx = ArchiveIndex(archive) if index is None else index
    try:
        registry = CollectorRegistry(auto_describe=False)
        collector = ArchiveCollector(idx)
        registry.register(collector)
        status = collector.update()
        if not status.ok:
            raise ScanFailedError(status)
        key = dict(grouping_key) if grouping_key is not None else {"instance": socket.gethostname()}
        push_to_gateway(gateway, job=job, registry=registry, grouping_key=key, timeout=timeout)
    finally:
        if own_index:
            idx.close()
    return status
