"""The archive's JSON schema (draft-07), generated from :class:`exporter.archive.model.BatchRecord`.

The pydantic model is the single source; ``schemas/batch-metrics.json`` is this module's output,
committed so that tools without Python can validate records, and a test fails when it is stale.
Regenerate it with ``python -m exporter.archive.schema`` (or check it with ``--check``).

The seed's schema permits extra properties, so every record valid here is valid there too;
this one is stricter where the model is (non-negative counts, known enums, ``run_id`` syntax).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from exporter.archive.model import BatchRecord

__all__ = ["DEFAULT_SCHEMA_PATH", "build_schema", "main", "render_schema"]

DRAFT_07: Final = "http://json-schema.org/draft-07/schema#"
DEFAULT_SCHEMA_PATH: Final = Path("schemas/batch-metrics.json")
_REF_TEMPLATE: Final = "#/definitions/{model}"


def build_schema() -> dict[str, Any]:
    """The draft-07 schema of a batch record (definitions under ``definitions``)."""
    generated = BatchRecord.model_json_schema(ref_template=_REF_TEMPLATE)
    definitions = generated.pop("$defs", {})
    head = {
        "$schema": DRAFT_07,
        "title": generated.pop("title"),
        "description": generated.pop("description"),
    }
    generated.pop("$schema", None)
    schema: dict[str, Any] = {**head, **generated}
    if definitions:
        schema["definitions"] = definitions
    return schema


def render_schema() -> str:
    """The schema as committed: indented JSON with a final newline."""
    return json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or with ``--check`` compare) the committed schema file."""
    parser = argparse.ArgumentParser(prog="python -m exporter.archive.schema", description=__doc__)
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_SCHEMA_PATH)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    path: Path = args.path
    content = render_schema()
    if args.check:
        try:
            current = path.read_text(encoding="utf-8")
        except OSError as exc:
            print(f"{path}: cannot read: {exc.strerror or exc}", file=sys.stderr)
            return 1
        if current != content:
            print(f"{path} is stale: run python -m exporter.archive.schema", file=sys.stderr)
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
