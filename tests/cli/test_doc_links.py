"""Every relative link in README.md and docs/*.md resolves inside the repository (a fresh clone
has nothing beside it), and every ``#anchor`` names a heading of its page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", ROOT / "benchmarks" / "README.md", *ROOT.glob("docs/*.md")])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
OUTSIDE_PATH = re.compile(r"`(\.\./[^`\s]+)`")  # a path in code that climbs out of its directory
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {_slug(m) for m in re.findall(r"^#+\s+(.*)$", text, re.MULTILINE)}


def _targets(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return LINK.findall(text)


def _inside(path: Path) -> bool:
    return path.resolve().is_relative_to(ROOT)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve_inside_the_repository(page: Path) -> None:
    broken = []
    for target in _targets(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / path_part) if path_part else page
        if not _inside(resolved) or not resolved.exists():
            broken.append(f"{target} (no such file in the repository)")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target} (no heading #{anchor} in {resolved.name})")
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    for path_text in OUTSIDE_PATH.findall(text):
        if not _inside(page.parent / path_text):
            broken.append(f"`{path_text}` (outside the repository)")
    assert broken == []


def test_the_checker_finds_what_it_must(tmp_path: Path) -> None:
    assert _slug("Backfill: history into a new Prometheus") == (
        "backfill-history-into-a-new-prometheus"
    )
    assert _targets(ROOT / "README.md"), "the README links to its docs"
    page = tmp_path / "page.md"
    page.write_text("see [a](a.md) and [b](https://example.com)\n```\n[c](c.md)\n```\n")
    assert _targets(page) == ["a.md", "https://example.com"]
    assert not _inside(ROOT / ".." / "shared" / "design.md")


def test_the_ci_snippet_installs_batch_metrics_not_the_users_project() -> None:
    text = (ROOT / "docs" / "automation.md").read_text(encoding="utf-8")
    (workflow,) = [
        yaml.safe_load(block)
        for block in re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
        if "jobs:" in block
    ]
    steps = workflow["jobs"]["trends"]["steps"]
    runs = [s["run"].split("#")[0].split() for s in steps if "run" in s]
    installs = [run[-1] for run in runs if run[:2] == ["pip", "install"]]
    checkouts = {
        s["with"]["path"]: s["with"]["repository"]
        for s in steps
        if "repository" in s.get("with", {})
    }
    assert len(installs) == 1 and installs[0] != "."
    assert checkouts[installs[0].removeprefix("./")].endswith("/batch-metrics")
