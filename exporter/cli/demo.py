"""``batch-metrics demo``: run a simulated batch through the real instrumentation and exporter.

Batch ``demo-<seed>`` (operation ``execute``) runs three stages of PRPs in parallel threads.
Each PRP "works" for a fraction of a second and reports token usage as an LLM agent would: the
main agent on Claude Sonnet, review subagents on Claude Haiku, and one call on a local model
that has no price (so the record shows an unpriced model). One PRP fails with an exception and
one finishes only partly; which ones is decided by ``--seed``. Durations in the record are the
real, measured ones. The record lands in ``--archive`` (default: ``.ce/completed-batches``,
where every other command looks), a summary of it is printed, and the next command to try.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from exporter.archive.files import read_record
from exporter.archive.model import BatchRecord, dump_record
from exporter.util.errors import CommandError
from exporter.util.paths import DEFAULT_ARCHIVE

__all__ = ["add_arguments", "run", "run_demo"]

DEFAULT_SEED: Final = 47
MAIN_MODEL: Final = "claude-sonnet-4-5"
SUBAGENT_MODEL: Final = "claude-haiku-4-5"
LOCAL_MODEL: Final = "local-llama-3.1-8b"  # deliberately missing from the pricing table
# (stage number, stage name, number of PRPs)
STAGES: Final = ((1, "foundations", 3), (2, "features", 4), (3, "integration", 2))
WORK_SECONDS: Final = (0.05, 0.3)  # simulated work per PRP, uniformly drawn


class SubagentTimeout(TimeoutError):
    """The failure the demo injects: a subagent that did not answer in time."""


@dataclass(frozen=True, slots=True)
class _Plan:
    prp_id: str
    work_seconds: float
    input_tokens: int
    output_tokens: int
    cache_read: int
    fate: str  # "success" | "failure" | "partial"
    local_model_call: bool


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "example:\n  batch-metrics demo --seed 7 --archive .ce/completed-batches"
    parser.add_argument(
        "--archive",
        type=Path,
        default=DEFAULT_ARCHIVE,
        help="archive directory to write into (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"random seed; also names the batch demo-SEED (default: {DEFAULT_SEED})",
    )
    parser.add_argument("--json", action="store_true", help="print the path and record as JSON")


def _plan(seed: int) -> list[list[_Plan]]:
    rng = random.Random(seed)  # noqa: S311 (a simulation, not cryptography)
    names = [f"PRP-{seed}.{number}.{i}" for number, _, count in STAGES for i in range(1, count + 1)]
    failing, partial = rng.sample(names, 2)
    local = rng.choice([n for n in names if n not in (failing, partial)])
    plans: list[list[_Plan]] = []
    for number, _, count in STAGES:
        stage_plans = []
        for i in range(1, count + 1):
            prp_id = f"PRP-{seed}.{number}.{i}"
            fate = "failure" if prp_id == failing else "partial" if prp_id == partial else "success"
            stage_plans.append(
                _Plan(
                    prp_id=prp_id,
                    work_seconds=rng.uniform(*WORK_SECONDS),
                    input_tokens=rng.randrange(8_000, 60_000),
                    output_tokens=rng.randrange(1_000, 8_000),
                    cache_read=rng.randrange(0, 6_000),
                    fate=fate,
                    local_model_call=prp_id == local,
                )
            )
        plans.append(stage_plans)
    return plans


def _run_prp(plan: _Plan) -> str:
    from instrumentation import item, record_tokens  # noqa: PLC0415

    with item(plan.prp_id) as it:
        time.sleep(plan.work_seconds / 2)
        record_tokens(
            input=plan.input_tokens + plan.cache_read,
            output=plan.output_tokens,
            cache_read=plan.cache_read,
            model=MAIN_MODEL,
        )
        if plan.fate == "failure":
            raise SubagentTimeout(f"subagent for {plan.prp_id} did not answer within 600 s")
        time.sleep(plan.work_seconds / 2)
        # a review subagent checks the work; its tokens roll up into this PRP's stage
        record_tokens(
            input=plan.input_tokens // 4, output=plan.output_tokens // 5, model=SUBAGENT_MODEL
        )
        if plan.local_model_call:
            record_tokens(input=2_000, output=300, model=LOCAL_MODEL)
        if plan.fate == "partial":
            it.set_outcome(
                "partial", error_type="IncompletePhases", message="2 of 3 phases completed"
            )
    return plan.prp_id


def run_demo(archive: Path, seed: int) -> tuple[Path, BatchRecord]:
    """Run the simulated batch into ``archive``; return the record's path and the record."""
    from exporter.sdk.configure import configure  # noqa: PLC0415
    from instrumentation import ContextThreadPoolExecutor, batch, stage  # noqa: PLC0415

    plans = _plan(seed)
    telemetry = configure(archive, set_global=False, otlp=False)
    try:
        with batch(
            f"demo-{seed}",
            "execute",
            total_items=sum(len(p) for p in plans),
            tracer_provider=telemetry.tracer_provider,
            meter_provider=telemetry.meter_provider,
        ):
            for (number, name, _), stage_plans in zip(STAGES, plans, strict=True):
                with stage(number, name=name), ContextThreadPoolExecutor(max_workers=4) as pool:
                    futures: list[Future[str]] = [pool.submit(_run_prp, p) for p in stage_plans]
                    for future in futures:
                        future.exception()  # the orchestrator carries on past a failed PRP
    finally:
        telemetry.shutdown()
    written = telemetry.processor.written
    if not written:
        raise CommandError(f"the demo record could not be written to {archive} (see above)")
    return written[-1], read_record(written[-1])


def _summary(path: Path, record: BatchRecord) -> str:
    m = record.metrics
    lines = [
        f"batch {record.batch_id} {record.operation}: {record.status}, "
        f"{record.duration_seconds or 0:.2f} s wall time",
        f"items: {m.total_items} = {m.success_count} success, {m.failure_count} failure, "
        f"{m.partial_count} partial",
        "stages:",
    ]
    for s in m.stage_durations or []:
        lines.append(
            f"  {s.stage}  {s.duration_seconds or 0:6.2f} s  "
            f"{(s.input_tokens or 0) + (s.output_tokens or 0):>8,} tokens  {', '.join(s.items)}"
        )
    usage = m.token_usage
    if usage is not None:
        lines.append(
            f"tokens: {usage.input_tokens or 0:,} input, {usage.output_tokens or 0:,} output"
        )
        for model in usage.by_model or []:
            cost = (
                "unpriced"
                if model.cost_usd is None
                else f"${model.cost_usd:.4f} ({model.cost_source})"
            )
            lines.append(
                f"  {model.model:<22} {model.input_tokens:>9,} in {model.output_tokens:>8,} out"
                f"  {cost}"
            )
        total = "n/a" if usage.estimated_cost is None else f"${usage.estimated_cost:.4f}"
        unpriced = (
            f"; unpriced: {', '.join(usage.unpriced_models)}" if usage.unpriced_models else ""
        )
        lines.append(f"cost: {total} ({usage.cost_source}{unpriced})")
    for error in m.errors or []:
        lines.append(f"error: {error.item_id}: {error.error_type}: {error.error_message}")
    efficiency = (
        record.optimization_metrics.parallel_efficiency if record.optimization_metrics else None
    )
    if efficiency is not None:
        lines.append(
            f"parallel efficiency: {efficiency:.2f} (item-seconds of work per second of wall time)"
        )
    lines.append(f"record: {path}")
    return "\n".join(lines)


def _program() -> str:
    """How the user ran this command, for the next one: ``batch-metrics`` when that is what
    PATH finds, else the path they typed (``.venv/bin/batch-metrics`` from ``make demo``)."""
    typed = sys.argv[0] if sys.argv else ""
    if Path(typed).name != "batch-metrics":
        return "batch-metrics"
    on_path = shutil.which("batch-metrics")
    if on_path is not None and Path(on_path).resolve() == Path(typed).resolve():
        return "batch-metrics"
    return os.path.relpath(typed) if Path(typed).is_absolute() else typed


def next_command(archive: Path) -> str:
    """The documented next step after a demo: a trend report over the archive it wrote."""
    where = "" if archive == DEFAULT_ARCHIVE else f" --archive {archive}"
    return f"{_program()} trends --all{where}"


def run(args: argparse.Namespace) -> int:
    archive: Path = args.archive
    try:
        archive.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"cannot create archive {archive}: {exc.strerror or exc}") from exc
    path, record = run_demo(archive, args.seed)
    if args.json:
        document = {"path": str(path), "record": json.loads(dump_record(record))}
        print(json.dumps(document, indent=2))
    else:
        print(_summary(path, record))
        print(f"next: {next_command(archive)}")
    return 0
