"""The one data-file loader: every data file fails the same way, in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.archive.pricing import load_pricing
from exporter.reports.prioritize import load_framework
from exporter.signals.thresholds import load_thresholds
from exporter.util.datafile import MAX_DATA_FILE_BYTES, DataFileError

LOADERS = [
    pytest.param(load_thresholds, "thresholds", id="thresholds"),
    pytest.param(load_pricing, "pricing", id="pricing"),
    pytest.param(load_framework, "candidates", id="candidates"),
]


@pytest.mark.parametrize(("load", "kind"), LOADERS)
@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "cannot read {kind} file"),
        (b"a: [1,", "invalid {kind} file .*: not YAML"),
        (b"\xff\xfe", "invalid {kind} file .*: not UTF-8"),
        (b"- just\n- a list\n", "invalid {kind} file "),
        (b"x" * (MAX_DATA_FILE_BYTES + 1), "{kind} file .* is larger than 1 MiB"),
    ],
    ids=["missing", "not-yaml", "not-utf8", "wrong-shape", "huge"],
)
def test_a_bad_data_file_is_one_line_naming_it(
    load: object, kind: str, content: bytes | None, reason: str, tmp_path: Path
) -> None:
    path = tmp_path / f"{kind}.yaml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataFileError, match=reason.format(kind=kind)) as caught:
        load(path)  # type: ignore[operator]
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("load", "kind"), LOADERS)
def test_the_packaged_files_load(load: object, kind: str) -> None:
    assert load() is not None  # type: ignore[operator]
