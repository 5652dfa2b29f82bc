"""``batch-metrics demo`` and ``validate``: in process (cli.main) and as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.archive.files import read_record, write_record
from exporter.cli.demo import run_demo
from exporter.cli.main import main
from tests.support.seed import assert_valid_for_seed

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One demo run shared by the tests that only read its record."""
    archive = tmp_path_factory.mktemp("demo")
    path, _ = run_demo(archive, seed=5)
    return path


def test_demo_record_is_complete_and_valid_for_the_seed(demo_run: Path) -> None:
    record = read_record(demo_run)
    assert demo_run.name == "batch-demo-5-execute.json"
    m = record.metrics
    assert (m.total_items, m.success_count, m.failure_count, m.partial_count) == (9, 7, 1, 1)
    assert record.status == "partial"
    assert record.source == "instrumentation"
    assert m.stages == 3
    assert [len(s.items) for s in m.stage_durations or []] == [3, 4, 2]
    stage_time = sum(s.duration_seconds or 0 for s in m.stage_durations or [])
    assert record.duration_seconds is not None
    assert 0 < stage_time <= record.duration_seconds
    assert {e.error_type for e in m.errors or []} == {"SubagentTimeout", "IncompletePhases"}
    usage = m.token_usage
    assert usage is not None and usage.by_model is not None
    assert [u.model for u in usage.by_model] == [
        "claude-haiku-4-5",
        "claude-sonnet-4-5",
        "local-llama-3.1-8b",
    ]
    assert usage.unpriced_models == ["local-llama-3.1-8b"]
    assert usage.estimated_cost == round(sum(u.cost_usd or 0 for u in usage.by_model), 6)
    assert usage.total_tokens == sum(u.input_tokens + u.output_tokens for u in usage.by_model)
    # stages' tokens add up to the batch's: every call ran inside a stage
    assert sum(s.input_tokens or 0 for s in m.stage_durations or []) == usage.input_tokens
    assert record.optimization_metrics is not None
    efficiency = record.optimization_metrics.parallel_efficiency
    assert efficiency is not None and efficiency > 1.0  # items ran in parallel threads
    assert_valid_for_seed(json.loads(demo_run.read_text(encoding="utf-8")))


def test_demo_prints_summary_and_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--archive", str(tmp_path), "--seed", "11"]) == 0
    out = capsys.readouterr().out
    path = tmp_path / "batch-demo-11-execute.json"
    assert out.splitlines()[0].startswith("batch demo-11 execute: partial, ")
    assert "items: 9 = 7 success, 1 failure, 1 partial" in out
    assert "local-llama-3.1-8b" in out and "unpriced" in out
    assert out.splitlines()[-2:] == [
        f"record: {path}",
        f"next: batch-metrics trends --all --archive {tmp_path}",
    ]
    assert read_record(path).batch_id == "demo-11"


def test_demo_twice_keeps_both_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--archive", str(tmp_path), "--seed", "2", "--json"]) == 0
    assert main(["demo", "--archive", str(tmp_path), "--seed", "2", "--json"]) == 0
    first, second = (json.loads(chunk) for chunk in _split_json(capsys.readouterr().out))
    assert Path(first["path"]).name == "batch-demo-2-execute.json"
    assert (
        Path(second["path"]).name == f"batch-demo-2-execute.run-{second['record']['run_id']}.json"
    )
    assert len(list(tmp_path.glob("batch-*.json"))) == 2


def _split_json(text: str) -> list[str]:
    decoder = json.JSONDecoder()
    chunks, index = [], 0
    while index < len(text.strip()):
        _, end = decoder.raw_decode(text, index)
        chunks.append(text[index:end])
        index = end + 1
    return chunks


def test_demo_into_unusable_archive_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    assert main(["demo", "--archive", str(blocker / "sub")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("batch-metrics: error: cannot create archive ")
    assert err.count("\n") == 1


def test_demo_subprocess_writes_where_trends_finds_it_and_says_so(tmp_path: Path) -> None:
    result = _cli("demo", "--seed", "9", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    *_, record_line, next_line = result.stdout.splitlines()
    path = Path(record_line.removeprefix("record: "))
    assert path == Path(".ce/completed-batches/batch-demo-9-execute.json")
    assert read_record(tmp_path / path).metrics.total_items == 9
    assert result.stderr == ""
    assert next_line == "next: batch-metrics trends --all"
    trends = _cli("trends", "--all", cwd=tmp_path)
    assert trends.returncode == 0, trends.stderr
    assert "Analyzed 1 batch operations" in trends.stdout


# -- validate ------------------------------------------------------------------------------


@pytest.fixture
def archive(tmp_path: Path, demo_run: Path) -> Path:
    directory = tmp_path / "archive"
    write_record(directory, read_record(demo_run))
    return directory


def test_validate_all_valid(archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(archive)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "checked 1 record file(s): 1 valid, 0 invalid\n"
    assert captured.err == ""


def test_validate_reports_each_invalid_file(
    archive: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (archive / "batch-1-execute.json").write_text("{not json", encoding="utf-8")
    (archive / "batch-2-review.json").write_text(
        json.dumps({"batch_id": "2", "operation": "review", "metrics": {}}), encoding="utf-8"
    )
    (archive / "batch-3-generate.json").write_text("", encoding="utf-8")
    valid = read_record(next(archive.glob("batch-demo-*.json")))
    (archive / "batch-9-execute.json").write_text(valid.model_dump_json(), encoding="utf-8")
    (archive / "notes.json").write_text("ignored: not batch-*.json", encoding="utf-8")
    assert main(["validate", str(archive)]) == 1
    captured = capsys.readouterr()
    *lines, nulls = captured.err.splitlines()
    # model_dump_json() writes null for absent fields, which the seed's schema refuses
    assert nulls.startswith(
        f"note: {archive / 'batch-9-execute.json'}: not valid for the seed's schema, read anyway: "
    )
    assert "null is not of type 'integer'" in nulls
    assert lines == [
        f"invalid: {archive / 'batch-1-execute.json'}: malformed JSON: Invalid JSON: "
        "key must be a string at line 1 column 2",
        f"invalid: {archive / 'batch-2-review.json'}: wrong schema: timestamp: Field required",
        f"invalid: {archive / 'batch-3-generate.json'}: empty file",
        # the seed's scripts read every batch-*.json whatever its name: a note, not an error
        f"note: {archive / 'batch-9-execute.json'}: file name does not match its record "
        "(batch 'demo-5' execute): read as the record says",
    ]
    assert captured.out == "checked 5 record file(s): 2 valid (1 with notes), 3 invalid\n"


def test_validate_json_output(archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = archive / "batch-1-execute.json"
    bad.write_text("[]", encoding="utf-8")
    assert main(["validate", str(archive), "--json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document == {
        "checked": 2,
        "valid": 1,
        "invalid": [
            {"path": str(bad), "reason": "wrong schema: record: Input should be an object"}
        ],
        "notes": [],
    }


def test_validate_single_file_and_symlink(
    archive: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (record,) = archive.glob("batch-*.json")
    assert main(["validate", str(record)]) == 0
    link = archive / "batch-link-execute.json"
    link.symlink_to(record)
    assert main(["validate", str(link)]) == 1
    assert capsys.readouterr().err == f"invalid: {link}: is a symbolic link (refused)\n"


def test_validate_missing_path_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere"
    assert main(["validate", str(missing)]) == 2
    assert capsys.readouterr().err == f"batch-metrics: error: {missing} does not exist\n"


def test_validate_default_path_relative_to_cwd(tmp_path: Path) -> None:
    result = _cli("validate", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "batch-metrics: error: .ce/completed-batches does not exist\n"
    archive = tmp_path / ".ce" / "completed-batches"
    archive.mkdir(parents=True)
    (archive / "batch-1-execute.json").write_text('{"batch_id": 1', encoding="utf-8")
    result = _cli("validate", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("invalid: .ce/completed-batches/batch-1-execute.json: ")
    assert result.stdout == "checked 1 record file(s): 0 valid, 1 invalid\n"
