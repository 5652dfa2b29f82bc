"""Small real git repositories in the LLM-agent orchestrator's conventions, built in tmp_path.

``Project`` writes PRP files with front matter, the orchestrator's ``.ce/orchestration/`` files
and code, and commits them with controlled author and committer dates (minutes after ``T0``),
so ``analyze`` runs against real ``git log --name-status`` output.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

T0 = datetime(2025, 11, 12, 9, 0, tzinfo=UTC)


def git(root: Path, *args: str, when: datetime | None = None) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    if when is not None:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = when.isoformat()
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.stdout


def front_matter(**front: object) -> str:
    lines = ["---"]
    for key, value in front.items():
        lines.append(f"{key}: {json.dumps(value) if isinstance(value, list) else value}")
    return "\n".join([*lines, "---", ""])


class Project:
    """A git work tree with helpers that write files the way the orchestrator does."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        git(root, "init", "-q", "-b", "main")

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def prp(
        self, name: str, folder: str = "feature-requests", body: str = "", **front: object
    ) -> str:
        """Write ``PRPs/{folder}/{name}.md`` with front matter; returns its relative path."""
        rel = f"PRPs/{folder}/{name}.md"
        text = front_matter(**front) + f"\n# {name}\n\n{body or 'The plan of this item.'}\n"
        self.write(rel, text)
        return rel

    def set_front(self, rel: str, **changes: object) -> None:
        """Change front matter fields of a PRP, leaving its body exactly as it was."""
        path = self.root / rel
        lines = path.read_text().splitlines(keepends=True)
        end = next(i for i, line in enumerate(lines[1:], start=1) if line.strip() == "---")
        fields = dict(line.rstrip("\n").split(": ", 1) for line in lines[1:end])
        fields.update({k: str(v) for k, v in changes.items()})
        head = "".join(f"{k}: {v}\n" for k, v in fields.items())
        path.write_text("---\n" + head + "".join(lines[end:]))

    def move(self, src: str, dst: str) -> None:
        (self.root / dst).parent.mkdir(parents=True, exist_ok=True)
        git(self.root, "mv", src, dst)

    def commit(self, subject: str, minutes: float, body: str = "") -> str:
        """Commit everything in the work tree at ``T0 + minutes``; returns the sha."""
        git(self.root, "add", "-A")
        message = subject + (f"\n\n{body}" if body else "")
        when = T0 + timedelta(minutes=minutes)
        git(self.root, "commit", "-q", "--allow-empty", "-m", message, when=when)
        return git(self.root, "rev-parse", "HEAD").strip()

    def code(self, rel: str, minutes: float, subject: str, body: str = "") -> str:
        """Change a code file and commit it."""
        path = self.root / rel
        old = path.read_text() if path.exists() else ""
        self.write(rel, old + f"# change at {minutes}\n")
        return self.commit(subject, minutes, body)

    def orchestration(self, rel: str, data: dict[str, Any]) -> Path:
        """Write a JSON file under ``.ce/orchestration/`` (not committed)."""
        return self.write(f".ce/orchestration/{rel}", json.dumps(data))


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)
