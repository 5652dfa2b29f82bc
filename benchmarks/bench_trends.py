"""Benchmark: the seed's trend-analysis.py against ``batch-metrics trends --all``.

Generates archives of 1k, 10k (and, with --sizes, 100k) records, runs the seed's script
(extracted from the seed PRP at run time) and ``batch-metrics trends --all`` in fresh
processes, and prints wall time and peak memory (max RSS) of each, cold (no index yet; the
fastest of two runs alternating with the seed's) and warm (index up to date), with the ratios.
Also times ``analyze`` on a generated 500-commit repository.

    .venv/bin/python -m benchmarks.bench_trends --sizes 1000 10000 100000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks import REPO, compile_bytecode
from tests.support.generated_archive import write_archive
from tests.support.seed import extract_script


def _timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process."""
    started = time.perf_counter()
    with subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL) as proc:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{argv[1]} failed with exit {proc.returncode}")
    return elapsed, usage.ru_maxrss / 1024


@dataclass(frozen=True)
class TrendsTiming:
    """Wall seconds and peak MiB of the seed's script and of ours, cold and warm; seconds of
    the least any cold build of our index can take here (``bench_floor``)."""

    seed: tuple[float, float]
    cold: tuple[float, float]
    warm: tuple[float, float]
    floor: float


def _read_every_file(archive: Path) -> None:
    """Read the archive once, untimed: otherwise whichever runs first pays for the disk."""
    for path in archive.iterdir():
        path.read_bytes()


def _fastest(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return min(runs, key=lambda run: run[0])


def measure_trends(size: int, work: Path, rounds: int = 2) -> TrendsTiming:
    """Run the seed's trend-analysis.py and ``trends --all`` cold, alternately, ``rounds``
    times each on one archive (the fastest of each counts), then ours warm and ``bench_floor``.

    The files are read once before, so that neither pays for reading them from disk (the
    seed's time varied by a quarter with it).
    """
    project = work / f"trends-{size}"
    compile_bytecode()
    archive = project / ".ce/completed-batches"
    write_archive(archive, size)
    _read_every_file(archive)
    seed = extract_script("trend-analysis", work / "seed")
    index = work / f"ix{size}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "BATCH_METRICS_INDEX": str(index)}
    ours = [sys.executable, "-m", "exporter.cli", "trends", "--all", "--no-save"]
    seed_runs, cold_runs = [], []
    for _ in range(rounds):
        seed_runs.append(_timed([sys.executable, str(seed), "--all"], project, env))
        for suffix in ("", "-wal", "-shm"):  # no index: a cold run
            Path(f"{index}{suffix}").unlink(missing_ok=True)
        cold_runs.append(_timed(ours, project, env))
    seed_run, cold = _fastest(seed_runs), _fastest(cold_runs)
    warm = _timed(ours, project, env)
    floor = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_floor", str(archive)],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return TrendsTiming(seed_run, cold, warm, float(floor.stdout))


def bench_trends(size: int, work: Path) -> None:
    t = measure_trends(size, work)
    (seed_t, seed_m), (cold_t, cold_m), (warm_t, warm_m) = t.seed, t.cold, t.warm
    print(
        f"{size:>7} records | seed {seed_t:6.2f} s {seed_m:6.0f} MiB | "
        f"ours cold {cold_t:6.2f} s {cold_m:6.0f} MiB ({seed_t / cold_t:4.1f}x) | "
        f"warm {warm_t:5.2f} s {warm_m:5.0f} MiB ({seed_t / warm_t:5.1f}x) | "
        f"floor {t.floor:5.2f} s ({t.floor / seed_t:.2f} of the seed)"
    )


def bench_analyze(commits: int, work: Path) -> None:
    root = work / "repo"
    root.mkdir()
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    git = ["git", "-c", "user.name=b", "-c", "user.email=b@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=root, check=True, env=env)
    prps = root / "PRPs/feature-requests"
    prps.mkdir(parents=True)
    for n in range(20):
        (prps / f"PRP-47.{n // 5 + 1}.{n}.md").write_text(
            f"---\nprp_id: PRP-47.{n // 5 + 1}.{n}\nbatch_id: 47\nstage: {n // 5 + 1}\n"
            "status: completed\n---\n"
        )
    # fast-import: 500 commits with controlled dates in one process
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    stream = []
    for i in range(commits):
        when = int((t0 + timedelta(minutes=i)).timestamp())
        item = f"PRP-{47 if i % 2 else 470}.{i % 4 + 1}.{i % 20}"
        message = f"Implement {item} step {i}\n".encode()
        stream.append(f"commit refs/heads/main\ncommitter b <b@example.com> {when} +0000\n")
        stream.append(f"data {len(message)}\n")
        stream.append(message.decode() + "\n")
    subprocess.run(
        [*git, "fast-import", "--quiet"],
        cwd=root,
        input="".join(stream).encode(),
        check=True,
        env=env,
    )
    subprocess.run([*git, "checkout", "-q", "main"], cwd=root, check=True, env=env)
    cmd = [sys.executable, "-m", "exporter.cli", "analyze", "--batch", "47", "--root", str(root)]
    elapsed, mem = _timed(cmd, REPO, {**env, "PYTHONPATH": str(REPO)})
    print(f"analyze, {commits}-commit repository: {elapsed:.2f} s (whole process), {mem:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--commits", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-trends-") as tmp:
        work = Path(tmp)
        bench_analyze(args.commits, work)
        for size in args.sizes:
            bench_trends(size, work)


if __name__ == "__main__":
    main()
