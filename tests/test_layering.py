"""The import graph runs one way: instrumentation <- exporter's parts <- cli.

Each part of :mod:`exporter` may import only the parts listed here (its package docstring says
the same in words); a new arrow is a design decision, made here and in docs/architecture.md.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PARTS = ("util", "archive", "signals", "index", "history", "sdk", "reports", "prometheus")
ALLOWED: dict[str, set[str]] = {
    "util": set(),
    "archive": {"util"},
    "signals": {"util"},
    "index": {"archive", "util"},
    "history": {"archive", "util"},
    "sdk": {"archive", "util"},
    "reports": {"index", "archive", "signals", "util"},
    "prometheus": {"index", "archive", "signals", "util"},
    "grafana": {"prometheus", "signals", "util"},
    "stack": {"util"},
    "cli": {*PARTS, "grafana", "stack"},
    "": {"sdk"},  # exporter/__init__.py: configure() lives in sdk
}


def _imports(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def _part(path: Path) -> str:
    relative = path.relative_to(REPO / "exporter")
    return relative.parts[0] if len(relative.parts) > 1 else ""


def test_every_exporter_package_is_in_the_map() -> None:
    packages = {p.name for p in (REPO / "exporter").iterdir() if (p / "__init__.py").is_file()}
    assert packages - {"data"} == set(ALLOWED) - {""}


@pytest.mark.parametrize("path", sorted((REPO / "exporter").rglob("*.py")), ids=str)
def test_exporter_modules_import_only_the_parts_below_them(path: Path) -> None:
    part = _part(path)
    for module in _imports(path):
        if not module.startswith("exporter."):
            continue
        target = module.split(".")[1]
        if target in (part, "data"):
            continue
        assert target in ALLOWED[part], f"{path.relative_to(REPO)} imports {module}"


@pytest.mark.parametrize("path", sorted((REPO / "instrumentation").rglob("*.py")), ids=str)
def test_instrumentation_imports_the_otel_api_and_nothing_of_the_exporter(path: Path) -> None:
    for module in _imports(path):
        top = module.split(".")[0]
        assert top != "exporter", f"{path.name} imports {module}"
        assert not module.startswith("opentelemetry.sdk"), f"{path.name} imports {module}"


@pytest.mark.parametrize("path", sorted((REPO / "tests").rglob("*.py")), ids=str)
def test_tests_share_helpers_through_support_never_through_each_other(path: Path) -> None:
    for module in _imports(path):
        last = module.rsplit(".", 1)[-1]
        assert not (module.startswith("tests.") and last.startswith("test_")), (
            f"{path.relative_to(REPO)} imports the test module {module}: move what it needs "
            "into tests/support/"
        )
