"""The README's instrumentation example runs as written and produces the record it promises:
a failing PRP is recorded and the others carry on."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from exporter.archive.files import read_record

README = Path(__file__).resolve().parents[2] / "README.md"

# What the example leaves to "your code": a subagent that reports its token usage, and one
# that does not answer.
SUBAGENT = """
from types import SimpleNamespace

class SubagentTimeout(TimeoutError):
    pass

def run_subagent(prp_id):
    if prp_id == "PRP-47.1.3":
        raise SubagentTimeout("no answer within 600 s")
    return SimpleNamespace(input_tokens=1200, output_tokens=300, model="claude-sonnet-4-5")
"""


def test_readme_example_writes_the_record_it_describes(tmp_path: Path) -> None:
    (example,) = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    script = tmp_path / "orchestrator.py"
    script.write_text(SUBAGENT + example)

    done = subprocess.run(
        [sys.executable, str(script)],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "PRP-47.1.3 failed: no answer within 600 s\n"  # and it carried on

    record = read_record(tmp_path / ".ce" / "completed-batches" / "batch-47-execute.json")
    assert (record.batch_id, record.operation, record.status) == ("47", "execute", "partial")
    m = record.metrics
    assert (m.total_items, m.success_count, m.failure_count, m.stages) == (3, 2, 1, 1)
    assert m.errors is not None
    assert [(e.item_id, e.error_type) for e in m.errors] == [("PRP-47.1.3", "SubagentTimeout")]
    assert m.stage_durations is not None
    assert sorted(m.stage_durations[0].items) == ["PRP-47.1.1", "PRP-47.1.2", "PRP-47.1.3"]
    assert m.token_usage is not None
    assert (m.token_usage.input_tokens, m.token_usage.output_tokens) == (2400, 600)
    assert m.token_usage.cost_source == "estimate"
