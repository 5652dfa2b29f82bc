"""The seed PRP's JSON schema and scripts, read from the copy in ``tests/fixtures/seed/``.

The seed ``PRP-47.7.1-phase2-metrics-monitoring.md`` is the project's original specification;
a verbatim copy lives in the repository so that a fresh clone needs nothing beside it. Its
``python`` code blocks are written to a temporary directory and loaded from there, so tests
and benchmarks run ``trend-analysis.py`` and ``analyze-batch.py`` exactly as the seed wrote
them, and its ``json`` block is the schema every record must satisfy.
"""

from __future__ import annotations

import importlib.util
import json
import re
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any, Final, Literal

import jsonschema

SEED_PATH: Final = (
    Path(__file__).resolve().parents[1] / "fixtures/seed/PRP-47.7.1-phase2-metrics-monitoring.md"
)

ScriptName = Literal["trend-analysis", "analyze-batch"]
# What identifies each script's block in the seed.
_MARKERS: Final[dict[str, str]] = {
    "trend-analysis": "class TrendAnalyzer",
    "analyze-batch": "class BatchAnalyzer",
}
_BLOCK: Final = re.compile(r"^```python\n(.*?)^```\s*$", re.DOTALL | re.MULTILINE)


def python_blocks(markdown: str) -> list[str]:
    """The contents of the fenced ``python`` blocks of ``markdown``, in order."""
    return [m.group(1) for m in _BLOCK.finditer(markdown)]


def extract_script(name: ScriptName, directory: Path) -> Path:
    """Write the seed's ``name``.py into ``directory`` and return its path."""
    marker = _MARKERS[name]
    blocks = [b for b in python_blocks(SEED_PATH.read_text(encoding="utf-8")) if marker in b]
    if len(blocks) != 1:
        raise LookupError(
            f"expected one python block with {marker!r} in the seed, found {len(blocks)}"
        )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.py"
    path.write_text(blocks[0], encoding="utf-8")
    return path


def load_script(name: ScriptName, directory: Path) -> ModuleType:
    """Extract the seed's script into ``directory`` and import it as a module."""
    path = extract_script(name, directory)
    spec = importlib.util.spec_from_file_location(f"seed_{name.replace('-', '_')}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def seed_schema() -> dict[str, Any]:
    """The first ```json block after "batch-metrics.json" in the seed PRP."""
    text = SEED_PATH.read_text(encoding="utf-8")
    after = text[text.index("batch-metrics.json") :]
    match = re.search(r"```json\n(.*?)\n```", after, re.DOTALL)
    assert match is not None, "no json block after batch-metrics.json in the seed"
    schema: dict[str, Any] = json.loads(match.group(1))
    return schema


def seed_validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(seed_schema(), format_checker=jsonschema.FormatChecker())


def assert_valid_for_seed(document: Any) -> None:
    errors = sorted(seed_validator().iter_errors(document), key=str)
    assert errors == [], [e.message for e in errors]
