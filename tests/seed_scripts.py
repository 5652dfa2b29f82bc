"""The seed's own scripts, extracted at test time from the seed PRP (never copied into the project).

The seed ``PRP-47.7.1-phase2-metrics-monitoring.md`` lives in ``../shared/seeds/`` beside the
repository. Its ``python`` code blocks are written to a temporary directory and loaded from
there, so tests and benchmarks can run ``trend-analysis.py`` and ``analyze-batch.py`` exactly as
the seed wrote them.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from types import ModuleType
from typing import Final, Literal

import pytest

SEED_PATH: Final = Path(
    os.environ.get(
        "BATCH_METRICS_SEED",
        Path(__file__).resolve().parents[2]
        / "shared/seeds/PRP-47.7.1-phase2-metrics-monitoring.md",
    )
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


def seed_available() -> bool:
    return SEED_PATH.is_file()


def extract_script(name: ScriptName, directory: Path) -> Path:
    """Write the seed's ``name``.py into ``directory`` and return its path."""
    if not seed_available():
        pytest.skip(f"seed not found at {SEED_PATH}")
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
