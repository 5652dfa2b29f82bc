"""The ``/metrics`` response, with what changes only when records arrive rendered once.

prometheus_client renders every family at every scrape. ``serve``'s archive families (a few
hundred lines) change only when records are counted, yet rendering them took 7-20 ms a scrape
at 100,000 records. A collector that offers ``collect_parts()`` (:class:`PartedCollector`)
splits what it yields in two: ``stable`` families, which change only with
:attr:`Parts.version`, and ``current`` ones (self-metrics), rendered at every scrape.
:class:`CachingRegistry` keeps the rendered bytes of the stable part per content type and
version, and the deflate state after them, so a gzip response compresses only the current
part.

The response is what prometheus_client's own WSGI app gives for the same families, byte for
byte (tests/prometheus/test_exposition.py): the format is chosen by prometheus_client's
``choose_encoder`` (Prometheus text 0.0.4, OpenMetrics 1.0 and the newer versions it knows,
by ``Accept``), each part is rendered by that very encoder, and the format's trailer
(OpenMetrics' ``# EOF``) comes once at the end; gzip is prometheus_client's choice
(``gzip_accepted``) and level (9), as one gzip member. ``name[]`` filtering, and a registry
with target info, are left to prometheus_client's app (uncached). One difference: an
``Accept`` with a version prometheus_client cannot compare (``version=abc``), on which its app
fails (500, a traceback in the log at every such request), gets the default format.
"""

from __future__ import annotations

import struct
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final, NamedTuple, Protocol
from urllib.parse import parse_qs
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

__all__ = ["CachingRegistry", "PartedCollector", "Parts", "make_metrics_app"]

_GZIP_LEVEL: Final = 9  # gzip.compress's default, which prometheus_client uses
_MAX_FORMATS: Final = 8  # content types cached per collector; Accept headers are the client's


class Parts(NamedTuple):
    """What a :class:`PartedCollector` yields at one scrape, in order."""

    version: int  # changes whenever ``stable`` does
    stable: Sequence[Metric]
    current: Sequence[Metric]


class PartedCollector(Protocol):
    """A collector whose ``collect()`` yields ``collect_parts()``'s stable then current part."""

    def collect_parts(self) -> Parts: ...


class _Families:
    """A fixed list of families, as an encoder's registry argument."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


class _Deflated(NamedTuple):
    """A text compressed so far: the raw deflate output, the compressor to continue from, and
    the text's CRC-32."""

    output: bytes
    compressor: zlib._Compress
    crc: int


@dataclass
class _Rendered:
    """The stable part of one collector in one format, and its deflate state once asked."""

    version: int
    text: bytes
    _deflated: _Deflated | None = field(default=None, repr=False)

    def deflated(self) -> _Deflated:
        if self._deflated is None:
            compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
            output = compressor.compress(self.text)
            self._deflated = _Deflated(output, compressor, zlib.crc32(self.text))
        return self._deflated


class CachingRegistry(CollectorRegistry):
    """A registry that renders a :class:`PartedCollector`'s stable part once per version.

    ``collect()``, ``get_sample_value()`` and the rest behave as in any registry.
    """

    def __init__(self) -> None:
        super().__init__(auto_describe=False)
        self._ordered: list[Collector] = []  # registration order: the order of the output
        self._rendered: dict[tuple[int, str], _Rendered] = {}
        self._cache_lock = threading.Lock()

    def register(self, collector: Collector) -> None:
        super().register(collector)
        with self._cache_lock:
            self._ordered.append(collector)

    def unregister(self, collector: Collector) -> None:
        super().unregister(collector)
        with self._cache_lock:
            self._ordered.remove(collector)
            self._rendered = {k: v for k, v in self._rendered.items() if k[0] != id(collector)}

    def exposition(self, accept: str | None, *, gzip: bool = False) -> tuple[bytes, str]:
        """The response body for ``accept`` (gzip-compressed if asked), and its content type."""
        try:
            encoder, content_type = choose_encoder(accept or "")
        except (TypeError, ValueError):  # a version it cannot compare (prometheus_client raises)
            encoder, content_type = choose_encoder("")
        trailer = encoder(_Families(()))

        def encode(families: Sequence[Metric]) -> bytes:
            text = encoder(_Families(families))
            if not text.endswith(trailer):  # a format that is not families then a trailer
                raise ValueError(f"cannot render {content_type} in parts")
            return text[: len(text) - len(trailer)]

        with self._cache_lock:
            collectors = list(self._ordered)
        first: _Rendered | None = None  # a cached part the body starts with
        chunks: list[bytes] = []
        loose: list[Metric] = []  # rendered together, at every scrape
        for collector in collectors:
            collect_parts = getattr(collector, "collect_parts", None)  # isinstance: ~20 us
            if collect_parts is None:
                loose.extend(collector.collect())
                continue
            parts: Parts = collect_parts()
            if loose:
                chunks.append(encode(loose))
                loose = []
            rendered = self._stable(collector, parts, content_type, encode)
            if not chunks and first is None:
                first = rendered
            else:
                chunks.append(rendered.text)
            loose.extend(parts.current)
        chunks.append(encode(loose) + trailer)
        rest = b"".join(chunks)
        if not gzip:
            return (rest if first is None else first.text + rest), content_type
        return _gzip(first, rest), content_type

    def _stable(
        self, collector: Collector, parts: Parts, content_type: str, encode: _Encode
    ) -> _Rendered:
        key = (id(collector), content_type)
        with self._cache_lock:
            cached = self._rendered.get(key)
        if cached is not None and cached.version == parts.version:
            return cached
        rendered = _Rendered(parts.version, encode(parts.stable))
        with self._cache_lock:
            if key in self._rendered or len(self._rendered) < _MAX_FORMATS * len(self._ordered):
                self._rendered[key] = rendered
        return rendered


class _Encode(Protocol):
    def __call__(self, families: Sequence[Metric], /) -> bytes: ...


def _gzip(first: _Rendered | None, rest: bytes) -> bytes:
    """``gzip.compress(first.text + rest)``, continuing from ``first``'s deflate state."""
    if first is None:
        prefix, crc, size = b"", 0, 0
        compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    else:
        prefix, state, crc = first.deflated()
        compressor, size = state.copy(), len(first.text)
    body = prefix + compressor.compress(rest) + compressor.flush()
    # gzip.compress's header (level 9: XFL 2; OS 255, unknown) and trailer (CRC-32, size)
    header = struct.pack("<BBBBLBB", 0x1F, 0x8B, 8, 0, int(time.time()), 2, 255)
    trailer = struct.pack("<LL", zlib.crc32(rest, crc), (size + len(rest)) & 0xFFFFFFFF)
    return header + body + trailer


def make_metrics_app(registry: CachingRegistry) -> WSGIApplication:
    """A WSGI app serving ``registry`` as prometheus_client's ``make_wsgi_app`` does."""
    uncached = make_wsgi_app(registry)

    def app(
        environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterator[bytes] | list[bytes]:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if (
            environ.get("REQUEST_METHOD") != "GET"
            or "name[]" in query
            or registry.get_target_info()
        ):
            return uncached(environ, start_response)  # type: ignore[no-any-return]
        compress = gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING") or "")
        body, content_type = registry.exposition(environ.get("HTTP_ACCEPT"), gzip=compress)
        headers = [("Content-Type", content_type)]
        if compress:
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [body]

    return app
