"""The monitoring stack without Docker: Prometheus, Alertmanager, Pushgateway and the exporter
as local processes on loopback, with the configuration docker-compose.yml uses.

The configuration is the repository's own: ``prometheus/prometheus.yml`` and its rule files,
``alertmanager/alertmanager.yml``. Only what differs between a compose network and one machine
is rewritten, in a copy under the state directory: the compose service names in scrape and
Alertmanager targets (``exporter:9477``) become ``127.0.0.1:<port>``, rule file paths become
absolute, and, when asked, the scrape / evaluation intervals and the alerts' ``for`` are
shortened (for demos and tests; the defaults are the committed values). Grafana is not part
of it: point any Grafana at the Prometheus URL and import ``grafana/``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

__all__ = [
    "BINARIES",
    "DEFAULT_PORTS",
    "LOOPBACK",
    "Process",
    "StackError",
    "StackOptions",
    "check_ports_free",
    "find_binary",
    "port_in_use",
    "prometheus_config",
    "rule_files",
    "start_stack",
]

_log = logging.getLogger(__name__)

LOOPBACK: Final = "127.0.0.1"
# The compose file's host ports, so the URLs are the same with and without Docker.
DEFAULT_PORTS: Final[dict[str, int]] = {
    "prometheus": 9090,
    "alertmanager": 9093,
    "pushgateway": 9091,
    "exporter": 9477,
}
# Binary names: the Debian package's first, upstream's second.
BINARIES: Final[dict[str, tuple[str, ...]]] = {
    "prometheus": ("prometheus",),
    "alertmanager": ("prometheus-alertmanager", "alertmanager"),
    "pushgateway": ("prometheus-pushgateway", "pushgateway"),
    "promtool": ("promtool",),
}
# Inside the compose network each service listens on the same port it publishes.
_COMPOSE_PORTS: Final = DEFAULT_PORTS
_READY_PATHS: Final = {
    "prometheus": "/-/ready",
    "alertmanager": "/-/ready",
    "pushgateway": "/-/ready",
    "exporter": "/health",
}


class StackError(Exception):
    """The stack cannot start (one line, shown to the user)."""


@dataclass(frozen=True, slots=True)
class StackOptions:
    """Where the configuration and the data are, and the few things a native run may change."""

    config_dir: Path  # holds prometheus/ and alertmanager/ (the repository root)
    ce_dir: Path  # the orchestrator's .ce directory
    state_dir: Path  # rendered configs, TSDB, Alertmanager and Pushgateway data
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    scrape_interval: str | None = None
    evaluation_interval: str | None = None
    alert_for: str | None = None
    pushgateway: bool = True
    # Rule files by name as the thresholds in effect give them: they replace the config
    # dir's copies (with a warning) where those differ, so alerts judge as `trends` does.
    generated_rules: Mapping[str, str] = field(default_factory=dict)
    ready_timeout: float = 60.0


def find_binary(kind: str) -> str | None:
    """Path of a server binary on PATH, by its Debian or upstream name."""
    for name in BINARIES[kind]:
        found = shutil.which(name)
        if found:
            return found
    return None


def _rewrite_target(target: str, ports: dict[str, int]) -> str:
    host, _, port = target.rpartition(":")
    if host in ports and int(port) == _COMPOSE_PORTS[host]:
        return f"{LOOPBACK}:{ports[host]}"
    if host == "localhost" and int(port) == _COMPOSE_PORTS["prometheus"]:
        return f"{LOOPBACK}:{ports['prometheus']}"  # Prometheus scraping itself
    return target


def _rewrite_static_configs(configs: list[dict[str, Any]], ports: dict[str, int]) -> None:
    for static in configs:
        static["targets"] = [_rewrite_target(t, ports) for t in static.get("targets", [])]


def rule_files(config: dict[str, Any], base: Path) -> list[Path]:
    """The rule files a Prometheus configuration loads (globs resolved against ``base``)."""
    found: list[Path] = []
    for pattern in config.get("rule_files") or []:
        full = base / pattern  # an absolute pattern stays absolute
        # Prometheus allows wildcards in the last path element only.
        found.extend(sorted(full.parent.glob(full.name)))
    return found


def _override_for(rules_text: str, alert_for: str) -> str:
    document = yaml.safe_load(rules_text)
    for group in document.get("groups", []):
        for rule in group.get("rules", []):
            if "alert" in rule:
                rule["for"] = alert_for
    return yaml.safe_dump(document, sort_keys=False, width=10_000)


def prometheus_config(options: StackOptions, rules_dir: Path) -> dict[str, Any]:
    """The compose stack's prometheus.yml, rewritten for loopback (see the module docstring).

    The rule files it loads are copied into ``rules_dir`` (with ``for`` overridden if asked),
    or replaced by their :attr:`StackOptions.generated_rules` text where it differs.
    """
    source = options.config_dir / "prometheus" / "prometheus.yml"
    try:
        config: dict[str, Any] = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise StackError(f"cannot read {source}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise StackError(f"{source} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    ports = {k: v for k, v in options.ports.items() if options.pushgateway or k != "pushgateway"}
    config.setdefault("global", {})
    if options.scrape_interval:
        config["global"]["scrape_interval"] = options.scrape_interval
    if options.evaluation_interval:
        config["global"]["evaluation_interval"] = options.evaluation_interval
    rules_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in rule_files(config, source.parent):
        text = path.read_text(encoding="utf-8")
        fresh = options.generated_rules.get(path.name)
        if fresh is not None and text != fresh:
            _log.warning(
                "%s is stale for the thresholds in effect: the stack uses the rules they give "
                "(update the file with: batch-metrics rules --config-dir %s)",
                path,
                options.config_dir,
            )
            text = fresh
        if options.alert_for:
            text = _override_for(text, options.alert_for)
        (rules_dir / path.name).write_text(text, encoding="utf-8")
        copied.append(str(rules_dir / path.name))
    config["rule_files"] = copied
    for alerting in (config.get("alerting") or {}).get("alertmanagers", []):
        _rewrite_static_configs(alerting.get("static_configs", []), ports)
    jobs = []
    for job in config.get("scrape_configs", []):
        targets = [t for s in job.get("static_configs", []) for t in s.get("targets", [])]
        if not options.pushgateway and any(t.startswith("pushgateway:") for t in targets):
            continue  # no Pushgateway binary: drop its job rather than scrape nothing
        _rewrite_static_configs(job.get("static_configs", []), ports)
        jobs.append(job)
    config["scrape_configs"] = jobs
    return config


@dataclass
class Process:
    """One server of the stack."""

    name: str
    url: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=timeout)

    def tail(self, lines: int = 5) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-lines:])
        return ""


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:  # noqa: S310 (loopback URL)
            return int(response.status) == 200
    except (OSError, urllib.error.URLError):
        return False


def port_in_use(name: str, port: int) -> StackError:
    """The one short message for a port another program holds, naming the option to change."""
    return StackError(
        f"port {port} for {name} is in use on {LOOPBACK}: stop what uses it, or pass "
        f"--{name}-port with a free port"
    )


def check_ports_free(ports: dict[str, int]) -> None:
    """Raise :func:`port_in_use` for the first port of ``ports`` that cannot be bound.

    Checked before anything starts, so a conflict is one line rather than a server's log."""
    for name, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((LOOPBACK, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise port_in_use(name, port) from exc
                raise StackError(f"cannot listen on {LOOPBACK}:{port} for {name}: {exc}") from exc


def _wait_ready(process: Process, path: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            tail = process.tail()
            if "address already in use" in tail.lower():  # taken since check_ports_free
                raise port_in_use(process.name, int(process.url.rpartition(":")[2]))
            raise StackError(f"{process.name} exited with code {process.popen.returncode}: {tail}")
        if _answers(process.url + path):
            return
        time.sleep(0.1)
    raise StackError(f"{process.name} did not become ready on {process.url}: {process.tail()}")


def _argv(
    options: StackOptions, binaries: dict[str, str], prometheus_yml: Path
) -> dict[str, list[str]]:
    state, ports = options.state_dir, options.ports
    address = {name: f"{LOOPBACK}:{port}" for name, port in ports.items()}
    argv = {
        "alertmanager": [
            binaries["alertmanager"],
            f"--config.file={options.config_dir / 'alertmanager' / 'alertmanager.yml'}",
            f"--storage.path={state / 'alertmanager'}",
            f"--web.listen-address={address['alertmanager']}",
            "--cluster.listen-address=",
        ],
        "exporter": [
            sys.executable,
            "-m",
            "exporter.cli",
            "serve",
            f"--archive={options.ce_dir / 'completed-batches'}",
            f"--orchestration-dir={options.ce_dir / 'orchestration'}",
            f"--bind={LOOPBACK}",
            f"--port={ports['exporter']}",
            "--live-only",  # what ended before the stack first started is loaded as history
        ],
        "prometheus": [
            binaries["prometheus"],
            f"--config.file={prometheus_yml}",
            f"--storage.tsdb.path={state / 'prometheus'}",
            f"--web.listen-address={address['prometheus']}",
        ],
    }
    if options.pushgateway:
        argv["pushgateway"] = [
            binaries["pushgateway"],
            f"--web.listen-address={address['pushgateway']}",
            f"--persistence.file={state / 'pushgateway.db'}",
        ]
    return argv


def _check_config(promtool: str | None, prometheus_yml: Path) -> None:
    if promtool is None:
        return
    result = subprocess.run(
        [promtool, "check", "config", str(prometheus_yml)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        problem = (result.stderr or result.stdout).strip().splitlines()
        raise StackError(f"promtool rejects {prometheus_yml}: {problem[-1] if problem else '?'}")


@contextlib.contextmanager
def start_stack(
    options: StackOptions,
    *,
    on_ready: Callable[[Sequence[Process]], None] | None = None,
    load_history: Callable[[Path, Path], None] | None = None,
) -> Iterator[list[Process]]:
    """Start the stack, wait until every server answers, yield it, stop it on exit.

    Servers start in dependency order (Alertmanager, Pushgateway, exporter, then Prometheus, as
    in docker-compose.yml) and stop in reverse.
    """
    needed = ["prometheus", "alertmanager"] + (["pushgateway"] if options.pushgateway else [])
    binaries: dict[str, str] = {}
    for kind in needed:
        found = find_binary(kind)
        if found is None:
            names = " or ".join(BINARIES[kind])
            raise StackError(f"{names} not found on PATH: install it (e.g. apt install {names})")
        binaries[kind] = found
    if not (options.ce_dir / "completed-batches").is_dir():
        raise StackError(
            f"no archive at {options.ce_dir / 'completed-batches'} (run 'batch-metrics demo' "
            "first, or pass --ce-dir with your orchestrator's .ce directory)"
        )
    check_ports_free({name: options.ports[name] for name in ["exporter", *needed]})
    options.state_dir.mkdir(parents=True, exist_ok=True)
    rendered = options.state_dir / "prometheus.yml"
    config = prometheus_config(options, options.state_dir / "rules")
    rendered.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    _check_config(find_binary("promtool"), rendered)

    argv = _argv(options, binaries, rendered)
    if load_history is not None:  # (archive, TSDB directory), before Prometheus starts
        load_history(options.ce_dir / "completed-batches", options.state_dir / "prometheus")
    processes: list[Process] = []
    try:
        for name in ("alertmanager", "pushgateway", "exporter", "prometheus"):
            if name not in argv:
                continue
            log = options.state_dir / f"{name}.log"
            with log.open("wb") as sink:
                popen = subprocess.Popen(
                    argv[name], stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
            process = Process(name, f"http://{LOOPBACK}:{options.ports[name]}", popen, log)
            processes.append(process)
            _log.info("started %s (pid %d) on %s", name, popen.pid, process.url)
            _wait_ready(process, _READY_PATHS[name], time.monotonic() + options.ready_timeout)
        if on_ready is not None:
            on_ready(processes)
        yield processes
    finally:
        for process in reversed(processes):
            process.stop()
