"""The wheel alone gives the stack: its configs are package data, one source with the repo's.

The wheel is built for real (``pip wheel``, offline: the build backend comes from the local
index) and installed into a directory of its own; the commands then run from an empty project
directory with that directory first on the path, so nothing of the clone is used.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.archive.files import write_record
from exporter.stack.packaged import COMPOSE_FILES, CONFIG_DIRS, iter_stack_files
from tests.support.records import rec
from tests.support.servers import LOOPBACK, free_port, http_get, require_binary, wait_until

ROOT = Path(__file__).resolve().parents[2]
PACKAGED = "exporter/stack/files"
STACK = [sys.executable, "-m", "exporter.cli", "stack"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-cache-dir",
            "--no-deps",
            "-w",
            str(out),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"pip wheel failed:\n{done.stderr[-2000:]}")
    (built,) = out.glob("batch_metrics-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-cache-dir", "--no-deps"]
    subprocess.run(
        [*pip, "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return target


def _env(site: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCH_METRICS_")}
    env["PYTHONPATH"] = str(site)  # before the clone's editable install on sys.path
    return env


def test_the_build_config_ships_every_stack_file_of_the_repository() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    force = config["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert force == {name: f"{PACKAGED}/{name}" for name in (*COMPOSE_FILES, *CONFIG_DIRS)}


def test_the_packaged_copies_are_the_repository_files(wheel: Path) -> None:
    repository = {str(p): (ROOT / p).read_bytes() for p in iter_stack_files(ROOT)}
    assert "prometheus/prometheus.yml" in repository and "docker-compose.yml" in repository
    with zipfile.ZipFile(wheel) as archive:
        packaged = {
            name.removeprefix(PACKAGED + "/"): archive.read(name)
            for name in archive.namelist()
            if name.startswith(PACKAGED + "/")
        }
    assert packaged == repository


def test_the_installed_wheel_writes_the_compose_files_into_any_directory(
    installed: Path, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", "import exporter; print(exporter.__file__)"],
        cwd=project,
        env=_env(installed),
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.startswith(str(installed))  # the wheel's code, not the clone's
    done = subprocess.run(
        [sys.executable, "-m", "exporter.cli", "stack", "--init"],
        cwd=project,
        env=_env(installed),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "next: cp .env.example .env" in done.stderr
    written = {str(p): (project / p).read_bytes() for p in iter_stack_files(project)}
    assert written == {str(p): (ROOT / p).read_bytes() for p in iter_stack_files(ROOT)}


@pytest.fixture
def native_stack(installed: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    for kind in ("prometheus", "alertmanager", "pushgateway"):
        require_binary(kind)
    project = tmp_path / "project"
    write_record(project / ".ce" / "completed-batches", rec("wheel-1"))
    ports = [f"--{n}-port={free_port()}" for n in ("prometheus", "alertmanager", "pushgateway")]
    log = tmp_path / "stack.out"
    argv = [*STACK, f"--state-dir={tmp_path / 's'}"]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*argv, *ports, f"--exporter-port={free_port()}"],
            cwd=project,
            env=_env(installed),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process, log
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


@pytest.mark.integration
def test_the_installed_wheel_runs_the_native_stack_in_an_empty_project(
    native_stack: tuple[subprocess.Popen[bytes], Path],
) -> None:
    process, log = native_stack

    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"stack exited with {process.returncode}: {log.read_text()}")
        return "stack ready" in log.read_text()

    wait_until(ready, timeout=90, what="the wheel's batch-metrics stack to be ready")
    urls = dict(line.split() for line in log.read_text().splitlines() if "http://" in line)
    status, body = http_get(urls["exporter"] + "/health")
    assert status == 200 and b'"records": 1' in body
    status, _ = http_get(urls["prometheus"] + "/-/ready")
    assert status == 200


def test_a_taken_port_is_one_short_line_naming_the_option(tmp_path: Path) -> None:
    for kind in ("prometheus", "alertmanager", "pushgateway"):
        require_binary(kind)
    (tmp_path / ".ce" / "completed-batches").mkdir(parents=True)
    with socket.socket() as holder:
        holder.bind((LOOPBACK, 0))
        holder.listen()
        taken = holder.getsockname()[1]
        others = [f"--{n}-port={free_port()}" for n in ("exporter", "alertmanager", "pushgateway")]
        done = subprocess.run(
            [*STACK, f"--state-dir={tmp_path / 's'}", f"--prometheus-port={taken}", *others],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"batch-metrics: error: port {taken} for prometheus is in use on 127.0.0.1: stop what "
        "uses it, or pass --prometheus-port with a free port\n"
    )
