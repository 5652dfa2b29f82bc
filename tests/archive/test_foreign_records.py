"""A record another tool wrote into the archive (the real-world shape of issue 16) is read by
every command, with its figures counted, including those it keeps outside ``metrics``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from exporter.archive.files import read_record
from exporter.archive.lenient import read_elsewhere
from exporter.cli.main import main
from exporter.index.store import ArchiveIndex
from exporter.prometheus.collector import ArchiveCollector
from tests.support.seed import assert_valid_for_seed

FIXTURE = Path(__file__).parent / "fixtures" / "batch-PRP-48-generate.json"
NAME = FIXTURE.name
WILD_USAGE = ["token_usage.total", "token_usage.estimated_cost_usd"]


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    directory = tmp_path / "archive"
    directory.mkdir()
    shutil.copy(FIXTURE, directory / NAME)
    return directory


def test_the_fixture_is_valid_for_the_seed() -> None:
    assert_valid_for_seed(json.loads(FIXTURE.read_text(encoding="utf-8")))


def test_it_loads_and_keeps_the_other_tools_notes_as_theirs(archive: Path) -> None:
    record = read_record(archive / NAME)
    assert record.status == "completed"  # the right type: it means what ours means
    assert record.notes is None  # a string: another tool's notes, not ours
    ((where, value),) = [(u.where, u.value) for u in record.unused]
    assert where == "notes" and value.startswith("Successfully generated and scoped all 10 PRPs")
    assert record.model_extra is not None
    assert set(record.model_extra) == {
        "title",
        "description",
        "token_usage",
        "commits",
        "deliverables",
        "quality_metrics",
        "phase_1_summary",
    }
    elsewhere = read_elsewhere(record)
    assert elsewhere.fields == tuple(WILD_USAGE)
    assert elsewhere.usage is not None
    assert (elsewhere.usage.total_tokens, elsewhere.usage.estimated_cost) == (66500, 1.33)


def test_validate_gives_a_note_and_exit_0(
    archive: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(archive)]) == 0
    captured = capsys.readouterr()
    assert captured.err == (
        f"note: {archive / NAME}: notes: not used: not this project's 'notes' "
        "(Input should be a valid list): another tool's field\n"
    )
    assert captured.out == "checked 1 record file(s): 1 valid (1 with notes), 0 invalid\n"


def test_trends_counts_it_and_says_how_it_was_read(
    archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["trends", "--archive", str(archive), "--no-save"]
    assert main([*argv, "--format", "json"]) == 0
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert report["records"] == 1 and report["invalid_files"] == {}
    generate = report["operations"]["generate"]
    assert generate["runs"] == 1
    assert json.dumps(generate).count("66500") >= 1  # the total tokens, from the top level
    assert report["read_elsewhere"] == {NAME: WILD_USAGE}
    assert main(argv) == 0
    markdown = capsys.readouterr().out
    notes = markdown[markdown.index("## Notes") :]
    assert "1 record(s) had no figure in the seed's place" in notes
    assert f"{NAME} (token_usage.total, token_usage.estimated_cost_usd)" in notes
    assert "$1.33" in markdown


def test_prioritize_backfill_and_serve_count_it(
    archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["prioritize", "--archive", str(archive), "--format", "json"]) == 0
    assert "1.33" in capsys.readouterr().out
    output = tmp_path / "history.om"
    assert main(["backfill", "--archive", str(archive), "--output", str(output)]) == 0
    text = output.read_text(encoding="utf-8")
    assert 'batch_items_total{operation="generate",outcome="success"} 10' in text
    assert 'batch_cost_usd_total{operation="generate",model="unknown"} 1.33' in text
    with ArchiveIndex(archive, tmp_path / "serve.sqlite") as index:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ArchiveCollector(index))

        def sample(name: str, **labels: str) -> float | None:
            return registry.get_sample_value(name, labels)

        assert sample("batch_operations_total", operation="generate", outcome="success") == 1
        assert sample("batch_items_total", operation="generate", outcome="success") == 10
        assert sample("batch_cost_usd_total", operation="generate", model="unknown") == 1.33
        assert (
            sample("batch_operation_duration_seconds_sum", operation="generate", outcome="success")
            == 2580
        )


def test_a_status_gives_the_outcome_when_no_count_does(
    archive: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = json.loads(FIXTURE.read_text(encoding="utf-8"))
    document["metrics"] = {}  # the seed requires the object, not its figures
    (archive / NAME).write_text(json.dumps(document), encoding="utf-8")
    assert main(["trends", "--archive", str(archive), "--no-save", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["read_elsewhere"] == {NAME: [*WILD_USAGE, "status"]}


def test_the_seeds_own_place_wins(archive: Path) -> None:
    document = json.loads(FIXTURE.read_text(encoding="utf-8"))
    document["metrics"]["token_usage"] = {"total_tokens": 70000}
    (archive / NAME).write_text(json.dumps(document), encoding="utf-8")
    elsewhere = read_elsewhere(read_record(archive / NAME))
    assert elsewhere.usage is not None
    assert (elsewhere.usage.total_tokens, elsewhere.usage.estimated_cost) == (70000, 1.33)
    assert elsewhere.fields == ("token_usage.estimated_cost_usd",)
