"""Commits that mention a batch, read with ``git log`` (argument lists, timeouts, no shell).

Fields are separated by ``%x1f`` and commits by ``%x1e``, which never occur in commit text, and
times are the author's strict ISO 8601 dates (``%aI``). ``git log`` pre-filters with fixed
strings; :mod:`exporter.history.sources.ids` then decides exactly which commits belong to the batch.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from exporter.history.sources import SourceError
from exporter.history.sources.ids import classify_commit, mentioned_batches, mentioned_items
from instrumentation.semconv import Operation

__all__ = ["GIT_TIMEOUT_SECONDS", "Commit", "batch_commits"]

GIT_TIMEOUT_SECONDS: Final = 30.0
_FORMAT: Final = "%H%x1f%aI%x1f%s%x1f%b%x1e"


@dataclass(frozen=True, slots=True)
class Commit:
    """A commit that mentions the batch, the items it names and the operation it did."""

    sha: str
    time: datetime
    subject: str
    items: frozenset[str]
    operation: Operation


def _git(root: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except FileNotFoundError as exc:
        raise SourceError("git is not installed (no 'git' on PATH)") from exc
    except subprocess.TimeoutExpired as exc:
        raise SourceError(f"git {args[0]} took longer than {GIT_TIMEOUT_SECONDS:.0f} s") from exc
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["failed"])[0]
        raise SourceError(f"git {args[0]} in {root}: {first}")
    return done.stdout


def _has_commits(root: Path) -> bool:
    inside = _git(root, "rev-parse", "--is-inside-work-tree").strip()
    if inside != "true":
        raise SourceError(f"{root} is not a git work tree")
    try:
        _git(root, "rev-parse", "--verify", "--quiet", "HEAD")
    except SourceError:
        return False
    return True


def batch_commits(root: Path, batch_id: str) -> list[Commit]:
    """Commits on HEAD that mention ``batch_id`` or one of its items, oldest first.

    Raises SourceError when git is missing or ``root`` is not a repository; a repository
    without commits has none.
    """
    try:
        if not _has_commits(root):
            return []
    except SourceError as exc:
        if "not a git repository" in str(exc):
            raise SourceError(f"{root} is not a git repository") from exc
        raise
    out = _git(
        root,
        "log",
        "--no-color",
        f"--format={_FORMAT}",
        "--fixed-strings",
        "--regexp-ignore-case",
        f"--grep=PRP-{batch_id}",
        f"--grep=batch {batch_id}",
        f"--grep=batch-{batch_id}",
        f"--grep=batch_id: {batch_id}",
        f"--grep=batch #{batch_id}",
    )
    commits: list[Commit] = []
    for entry in out.split("\x1e"):
        fields = entry.strip("\n").split("\x1f")
        if len(fields) != 4:
            continue
        sha, when, subject, body = fields
        message = f"{subject}\n{body}"
        items = mentioned_items(message, batch_id)
        if not items and batch_id not in mentioned_batches(message):
            continue
        commits.append(
            Commit(
                sha=sha,
                time=datetime.fromisoformat(when),
                subject=subject,
                items=frozenset(items - {f"PRP-{batch_id}"}),
                operation=classify_commit(message),
            )
        )
    commits.sort(key=lambda c: c.time)
    return commits
