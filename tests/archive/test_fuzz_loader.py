"""Property tests (hypothesis): the archive loader, the record builder, the model round trip and
the CLI argument paths never fail other than with their documented, one-line errors."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import Status, StatusCode

from exporter.archive.files import InvalidRecordFile, read_record
from exporter.archive.model import BatchRecord, dump_record, parse_record
from exporter.cli.main import main
from exporter.sdk.assemble import assemble
from instrumentation import semconv as sc
from tests.support.documents import FIELD_PATHS, VALID_BYTES, any_json
from tests.support.span_trees import PRICING, SpanTree

# -- the loader: any bytes -> a record or InvalidRecordFile -------------------------------------


@st.composite
def field_replaced(draw: st.DrawFn) -> bytes:
    document = json.loads(VALID_BYTES)
    *parents, key = draw(st.sampled_from(FIELD_PATHS))
    target = document
    for parent in parents:
        target = target[parent]
    target[key] = draw(any_json)
    return json.dumps(document).encode()


@st.composite
def spliced(draw: st.DrawFn) -> bytes:
    cut = draw(st.integers(0, len(VALID_BYTES)))
    insert = draw(st.binary(max_size=8))
    drop = draw(st.integers(0, 8))
    return VALID_BYTES[:cut] + insert + VALID_BYTES[cut + drop :]


any_input = st.one_of(
    st.binary(max_size=600),
    any_json.map(lambda v: json.dumps(v).encode()),
    field_replaced(),
    spliced(),
    st.integers(0, 20_000).map(lambda depth: b"[" * depth + b"]" * depth),
)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as directory:
        yield Path(directory)


@settings(max_examples=2000, deadline=None)
@given(data=any_input)
def test_loader_returns_a_record_or_a_one_line_reason(scratch: Path, data: bytes) -> None:
    path = scratch / "batch-fuzz-review.json"
    path.write_bytes(data)
    try:
        record = read_record(path)
    except InvalidRecordFile as exc:
        assert exc.reason and "\n" not in exc.reason and len(exc.reason) < 1000
        return
    assert isinstance(record, BatchRecord)
    # What we write, we read back as the same: dumping is a fixed point. (Not record equality:
    # an unknown extra field whose value is null is not written, as null fields are not.)
    written = dump_record(record)
    assert dump_record(parse_record(written)) == written


# -- the record builder: generated span trees ----------------------------------------------------

outcomes = st.sampled_from(["success", "failure", "partial", None, "bogus"])
token_counts = st.integers(-5, 10**9)


def _draw_tree(data: st.DataObject) -> tuple[SpanTree, dict[str, Any]]:
    """Build a span tree drawn from ``data`` (in the test: the SDK draws random span ids)."""
    draw = data.draw
    tree = SpanTree()
    announced = draw(st.none() | st.integers(-3, 40))
    root_attrs: dict[str, Any] = {}
    if announced is not None:
        root_attrs[sc.ATTR_TOTAL_ITEMS] = announced
    if draw(st.booleans()):
        root_attrs[sc.ATTR_OUTCOME] = draw(st.sampled_from(["success", "failure", "partial", "x"]))
    root = tree.batch(root_attrs)
    stages = [
        tree.stage(root, draw(st.integers(-2, 5)), draw(st.floats(0, 50)))
        for _ in range(draw(st.integers(0, 3)))
    ]
    expected_input = 0
    for _ in range(draw(st.integers(0, 12))):
        parent = draw(st.sampled_from([root, *stages]))
        item_id = draw(st.sampled_from(["PRP-1", "PRP-2", "PRP-3", "PRP-4", ""]))
        start = draw(st.floats(0, 100))
        outcome = draw(outcomes)
        span = tree.item(parent, item_id, start, None, outcome)
        for _ in range(draw(st.integers(0, 2))):
            inp = draw(token_counts)
            expected_input += max(inp, 0)
            cost = draw(st.none() | st.floats(max_value=1e6) | st.just(math.nan))  # inf: below
            tree.tokens(
                span,
                draw(st.sampled_from(["big", "small", "unknown-x", None])),
                inp,
                draw(token_counts),
                cost=cost,
            )
        if draw(st.booleans()):
            span.set_status(Status(StatusCode.ERROR, draw(st.text(max_size=30))))
        tree.end(span, start + draw(st.floats(-5, 100)))  # may end before it starts
    for stage in stages:
        tree.end(stage, 100)
    tree.end(root, draw(st.floats(0, 200)))
    return tree, {"announced": announced, "input": expected_input}


def _distinct_items(spans: Sequence[ReadableSpan]) -> int:
    """Item ids seen (an item span without an id is an item of its own)."""
    ids: set[object] = set()
    for span in spans:
        attrs = span.attributes or {}
        if attrs.get(sc.ATTR_KIND) == "item":
            ids.add(attrs.get(sc.ATTR_ITEM_ID) or span)
    return len(ids)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_assemble_never_raises_and_counts_add_up(data: st.DataObject) -> None:
    tree, expected = _draw_tree(data)
    record = assemble(tree.finished(), pricing=PRICING)
    m = record.metrics
    counted = (m.success_count or 0) + (m.failure_count or 0) + (m.partial_count or 0)
    distinct = _distinct_items(tree.finished())
    assert counted == distinct
    announced = expected["announced"] if (expected["announced"] or 0) > 0 else 0
    assert m.total_items == max(distinct, announced)
    usage = m.token_usage
    assert (usage.input_tokens if usage else 0) == expected["input"]
    if usage is not None and usage.estimated_cost is not None:
        assert math.isfinite(usage.estimated_cost)
    assert sum(len(s.items) for s in m.stage_durations or []) <= distinct
    assert parse_record(dump_record(record)) == record


def test_an_infinite_provider_cost_does_not_lose_the_batch() -> None:
    tree = SpanTree()
    root = tree.batch()
    span = tree.item(root, "PRP-1", 0, None)
    tree.tokens(span, "big", 10, 1, cost=math.inf)
    tree.end(span, 1)
    tree.end(root, 2)
    assert assemble(tree.finished(), pricing=PRICING).metrics.success_count == 1


# -- the model round trip ------------------------------------------------------------------------

finite = st.floats(0, 1e9, allow_nan=False, allow_infinity=False)
counts = st.integers(0, 10**12)


@st.composite
def records(draw: st.DrawFn) -> BatchRecord:
    total = draw(counts)
    success = draw(st.integers(0, total))
    failure = draw(st.integers(0, total - success))
    document: dict[str, Any] = {
        "batch_id": draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}", fullmatch=True)),
        "operation": draw(st.sampled_from(sc.OPERATIONS)),
        "timestamp": draw(
            st.datetimes(min_value=_dt(1970), max_value=_dt(2200), timezones=st.timezones())
        ),
        "duration_seconds": draw(st.none() | finite),
        "metrics": {
            "total_items": total,
            "success_count": success,
            "failure_count": failure,
            "partial_count": draw(st.integers(0, total - success - failure)),
            "token_usage": draw(
                st.none()
                | st.fixed_dictionaries(
                    {
                        "input_tokens": counts,
                        "output_tokens": counts,
                        "estimated_cost": st.none() | finite,
                    }
                )
            ),
            "stage_durations": draw(
                st.none()
                | st.lists(
                    st.fixed_dictionaries(
                        {
                            "stage": st.none() | st.integers(-5, 50),
                            "duration_seconds": st.none() | finite,
                            "items": st.lists(st.text(max_size=10), max_size=3),
                        }
                    ),
                    max_size=3,
                )
            ),
            "errors": draw(
                st.none()
                | st.lists(
                    st.fixed_dictionaries(
                        {
                            "item_id": st.none() | st.text(max_size=10),
                            "error_message": st.none() | st.text(max_size=30),
                        }
                    ),
                    max_size=3,
                )
            ),
        },
        "run_id": draw(
            st.none() | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,30}", fullmatch=True)
        ),
        "status": draw(st.none() | st.sampled_from(["completed", "partial", "failed", "crashed"])),
        "notes": draw(st.none() | st.lists(st.text(max_size=40), max_size=2)),
    }
    extras = draw(
        st.dictionaries(
            st.from_regex(r"x_[a-z]{1,6}", fullmatch=True),
            any_json.filter(_finite_json).filter(lambda v: v is not None),
            max_size=2,
        )
    )
    return BatchRecord.model_validate({**document, **extras})


def _dt(year: int) -> datetime:
    return datetime(year, 1, 2)  # naive bounds: hypothesis adds the time zone


def _finite_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        return False
    return True


@settings(max_examples=80, deadline=None)
@given(record=records())
def test_model_round_trip(record: BatchRecord) -> None:
    assert parse_record(dump_record(record)) == record


# -- the CLI: generated argument lists -----------------------------------------------------------

COMMANDS = ["validate", "recover", "trends", "prioritize", "analyze"]
FLAGS = [
    "--archive",
    "--batch",
    "--operation",
    "--recent",
    "--all",
    "--json",
    "--dry-run",
    "--no-save",
    "--rescan",
    "--since",
    "--format",
    "--report",
    "--root",
    "--stale-after",
    "--temp-age",
    "--thresholds",
    "--pricing",
    "-v",
    "--verbose",
    "--bogus",
]
VALUES = [
    "47",
    "../x",
    "a/b",
    "\x00",
    "",
    "-1",
    "0",
    "nan",
    "inf",
    "1e999",
    "execute",
    "all",
    "7d",
    "批次",
    "4" * 5000,
    "--",
    "-",
    "/",
    "/dev/null",
    "/etc/passwd",
    "ARCHIVE",
    "ROOT",
]


@pytest.fixture(scope="module")
def cli_dirs() -> Iterator[dict[str, str]]:
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        archive = root / "archive"
        archive.mkdir()
        (archive / "batch-47-review.json").write_bytes(VALID_BYTES)
        (archive / "batch-48-review.json").write_text("{broken", encoding="utf-8")
        yield {"ARCHIVE": str(archive), "ROOT": str(root)}


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    command=st.sampled_from(COMMANDS),
    rest=st.lists(
        st.sampled_from(FLAGS) | st.sampled_from(VALUES) | st.text(max_size=12), max_size=6
    ),
)
def test_cli_never_raises_and_prints_at_most_one_error_line(
    cli_dirs: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    rest: list[str],
) -> None:
    monkeypatch.chdir(cli_dirs["ROOT"])  # relative defaults (.ce/...) land in the scratch dir
    argv = [command, *(cli_dirs.get(a, a) for a in rest)]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: usage + one error line, exit 2; --help: exit 0
        code = exc.code if isinstance(exc.code, int) else 1
        assert code in (0, 2)
    assert isinstance(code, int)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert sum(1 for line in err.splitlines() if ": error: " in line) <= 1, err
    assert Path.cwd() == Path(cli_dirs["ROOT"])
