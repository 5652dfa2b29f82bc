"""Every ``BATCH_METRICS_*`` environment variable, read and checked in one place.

| variable | used by | value |
|---|---|---|
| ``BATCH_METRICS_ARCHIVE`` | ``serve`` | archive directory (default ``.ce/completed-batches``) |
| ``BATCH_METRICS_ORCHESTRATION_DIR`` | ``serve`` | orchestrator directory (``.ce/orchestration``) |
| ``BATCH_METRICS_BIND`` | ``serve`` | address to listen on (``127.0.0.1``) |
| ``BATCH_METRICS_PORT`` | ``serve`` | port, 0..65535 (``9477``) |
| ``BATCH_METRICS_WEB_CONFIG`` | ``serve`` | TLS / basic auth file (docs/security.md) |
| ``BATCH_METRICS_INDEX`` | every archive reader | index file (default: in the user's cache) |
| ``BATCH_METRICS_PRICING`` | ``configure()``, reports | pricing table merged over the built-in |
| ``BATCH_METRICS_THRESHOLDS`` | ``trends``, ``rules``, Grafana | thresholds file |

``BATCH_METRICS_CE_DIR`` and ``BATCH_METRICS_SOURCE`` are read by docker-compose.yml only (the
``.ce`` directory to mount; where the exporter image is built from).
An empty variable counts as unset. :func:`load_settings` checks every value at once: the CLI
calls it before running a command, so a bad value is one error line (exit 2), never a
traceback; a library caller (``configure()``) logs the error and falls back to the default, as
the OpenTelemetry SDK does with its ``OTEL_*`` variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from exporter.util.errors import UserError

__all__ = ["PREFIX", "VARIABLES", "Settings", "SettingsError", "load_settings", "path_setting"]

PREFIX: Final = "BATCH_METRICS_"
VARIABLES: Final = (
    "ARCHIVE",
    "ORCHESTRATION_DIR",
    "BIND",
    "PORT",
    "WEB_CONFIG",
    "INDEX",
    "PRICING",
    "THRESHOLDS",
)
_PATHS: Final = frozenset(VARIABLES) - {"BIND", "PORT"}


class SettingsError(UserError):
    """A ``BATCH_METRICS_*`` variable holds a value that cannot be used (one line)."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class Settings:
    """The variables' values; None where unset (or empty)."""

    archive: Path | None = None
    orchestration_dir: Path | None = None
    bind: str | None = None
    port: int | None = None
    web_config: Path | None = None
    index: Path | None = None
    pricing: Path | None = None
    thresholds: Path | None = None


def _port(name: str, text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise SettingsError(f"{name}={text!r} is not a port number (0..65535)") from None
    if not 0 <= port <= 65535:
        raise SettingsError(f"{name}={text!r} is outside 0..65535")
    return port


def _bind(name: str, text: str) -> str:
    if any(c.isspace() for c in text) or "/" in text:
        raise SettingsError(f"{name}={text!r} is not a host name or address")
    return text


def _path(name: str, text: str) -> Path:
    if "\0" in text:
        raise SettingsError(f"{name} holds a NUL character")
    return Path(text).expanduser()


def path_setting(name: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """One path variable (``name`` without the prefix, e.g. ``"PRICING"``); None when unset.

    For library code that needs just its own variable: a bad value of another variable is no
    reason for it to fail."""
    if name not in _PATHS:
        raise ValueError(f"not a path setting: {name}")
    value = (os.environ if environ is None else environ).get(PREFIX + name)
    return _path(PREFIX + name, value) if value else None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read every ``BATCH_METRICS_*`` variable (from ``os.environ`` unless given); raise
    SettingsError naming the first bad one."""
    env = os.environ if environ is None else environ
    port, bind = env.get(PREFIX + "PORT"), env.get(PREFIX + "BIND")
    return Settings(
        archive=path_setting("ARCHIVE", env),
        orchestration_dir=path_setting("ORCHESTRATION_DIR", env),
        bind=_bind(PREFIX + "BIND", bind) if bind else None,
        port=_port(PREFIX + "PORT", port) if port else None,
        web_config=path_setting("WEB_CONFIG", env),
        index=path_setting("INDEX", env),
        pricing=path_setting("PRICING", env),
        thresholds=path_setting("THRESHOLDS", env),
    )
