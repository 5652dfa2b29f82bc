"""``serve`` as another user over a read-only copy of an archive, as the compose exporter runs
(uid 10001, the archive mounted read-only): it sees every record written with the usual umask,
and says so clearly when it cannot read some (``/health`` fails) or any (one error line).

The other user is ``nobody``, in a child forked from this (root) process that drops its
privileges before running the command: the interpreter and the virtual environment may live
where ``nobody`` cannot reach (``/root/.pyenv``, a ``mktemp -d`` clone), so the command's modules
are imported before the fork."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import sys
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.archive.files import write_record
from exporter.cli.main import main
from tests.support.records import rec
from tests.support.servers import LOOPBACK, free_port, http_get, wait_until

NOBODY = 65534


def _others_may_read(path: Path) -> bool:
    """Whether another user can reach and read ``path`` (every parent searchable)."""
    if not stat.S_IMODE(path.stat().st_mode) & stat.S_IROTH:
        return False
    return all(stat.S_IMODE(p.stat().st_mode) & stat.S_IXOTH for p in path.parents)


_PACKAGE_DATA = Path(__file__).resolve().parents[2] / "exporter" / "data" / "thresholds.yaml"
pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0, reason="needs root to run serve as another user (CI runs as root)"
    ),
    pytest.mark.skipif(
        not _others_may_read(_PACKAGE_DATA),
        reason="the checkout is private (a mktemp -d clone): another user cannot read its code",
    ),
]


@pytest.fixture
def base() -> Iterator[Path]:
    # Not tmp_path: pytest's directories are owner-only, so another user could not reach them.
    directory = Path(tempfile.mkdtemp(prefix="bm-other-user-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        for path in [directory, *directory.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(directory)


def _archive(base: Path, umasks: list[int]) -> Path:
    """Records written under the given umasks, then copied read-only, as a bind mount ro."""
    source = base / "written"
    for n, mask in enumerate(umasks):
        previous = os.umask(mask)
        try:
            write_record(source, rec(f"other-{n}"))
        finally:
            os.umask(previous)
    copy = base / "readonly"
    shutil.copytree(source, copy)
    for path in [*copy.iterdir(), copy]:
        path.chmod(stat.S_IMODE(path.stat().st_mode) & ~0o222)
    return copy


def _as_nobody(base: Path, argv: list[str], log: Path) -> int:
    """Fork; the child becomes nobody, runs ``batch-metrics ARGV`` with stderr to ``log``."""
    import encodings.idna  # noqa: F401 (socket.getaddrinfo's, imported on first use)
    import importlib.readers  # noqa: F401 (importlib.resources', imported on first use)

    import exporter.cli.serve  # noqa: F401 (imported while root can still read the modules)

    cache = base / "cache"
    cache.mkdir(mode=0o777, exist_ok=True)
    cache.chmod(0o777)
    sink = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    pid = os.fork()
    if pid != 0:
        os.close(sink)
        return pid
    code = 1
    try:  # the child: never return into pytest
        os.dup2(sink, 2)
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        os.chdir(base)
        os.environ.update({"HOME": str(base), "XDG_CACHE_HOME": str(cache)})
        sys.stderr = os.fdopen(2, "w", buffering=1)
        code = main(argv)
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def _serve_as_nobody(base: Path, archive: Path, port: int) -> tuple[int, Path]:
    log = base / "serve.err"
    argv = ["serve", "--archive", str(archive), "--port", str(port)]
    return _as_nobody(base, [*argv, "--orchestration-dir", str(base / "none")], log), log


def _exit_status(pid: int) -> int:
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _health(pid: int, log: Path, port: int) -> tuple[int, dict[str, object]]:
    url = f"http://{LOOPBACK}:{port}/health"

    def answers() -> bool:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            pytest.fail(f"serve exited with {status}: {log.read_text()}")
        try:
            http_get(url, timeout=1)
        except OSError:
            return False
        return True

    wait_until(answers, timeout=60, what="serve as nobody")
    status, body = http_get(url)
    return status, json.loads(body)


def _stop(pid: int, log: Path) -> str:
    os.kill(pid, signal.SIGTERM)
    assert _exit_status(pid) == 0
    return log.read_text()


def test_another_user_serves_every_record_of_a_read_only_copy(base: Path) -> None:
    archive = _archive(base, [0o022, 0o022, 0o022])
    port = free_port()
    pid, log = _serve_as_nobody(base, archive, port)
    try:
        status, health = _health(pid, log, port)
        metrics = http_get(f"http://{LOOPBACK}:{port}/metrics")[1].decode()
    finally:
        err = _stop(pid, log)
    assert (status, health["status"], health["records"], health["invalid_records"]) == (
        200,
        "ok",
        3,
        0,
    ), err
    assert 'batch_operations_total{operation="execute",outcome="partial"} 3.0' in metrics


def test_unreadable_records_fail_health_with_the_reason(base: Path) -> None:
    archive = _archive(base, [0o022, 0o077])  # the second written owner-only
    port = free_port()
    pid, log = _serve_as_nobody(base, archive, port)
    try:
        status, health = _health(pid, log, port)
    finally:
        err = _stop(pid, log)
    assert (status, health["status"], health["records"]) == (503, "error", 1)
    assert health["error"] == (
        f"cannot read 1 record file(s) in {archive}: Permission denied (batch-other-1-execute.json)"
    )
    assert f"batch-metrics: error: {health['error']}; /health fails" in err


def test_an_archive_nobody_may_list_is_one_error_line(base: Path) -> None:
    archive = base / "private"
    archive.mkdir(mode=0o700)
    log = base / "serve.err"
    pid = _as_nobody(base, ["serve", "--archive", str(archive), "--port", "0"], log)
    assert _exit_status(pid) == 2
    assert log.read_text() == (
        f"batch-metrics: error: cannot read archive {archive}: permission denied\n"
    )
