"""The commits of a batch and what each changed, read with ``git log --name-status``.

A commit belongs to batch 47 when its *subject* names the batch or one of its items
(``PRP-47``, ``PRP-47.1.2``, ``batch 47``) or when it changed a file named like one of the
batch's items (``PRPs/executed/PRP-47.1.2-x.md``, ``PRPs/reviews/PRP-47.1.2-review.md``).
A mention in the body never makes a commit the batch's. Merge commits do no work of their own
and are left out. Git runs with argument lists, a timeout and no shell; header fields are
separated by ``%x1f`` and commits by ``%x1e``, which never occur in commit text.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Final

from exporter.history.sources import SourceError
from exporter.history.sources.ids import item_of_name, mentioned_items, subject_names_batch
from exporter.history.sources.prp import split_front_matter

__all__ = ["GIT_TIMEOUT_SECONDS", "Change", "Commit", "batch_commits", "front_matter_only"]

GIT_TIMEOUT_SECONDS: Final = 30.0
MAX_BLOB_BYTES: Final = 1024 * 1024
_FORMAT: Final = "%x1e%H%x1f%aI%x1f%s"


@dataclass(frozen=True, slots=True)
class Change:
    """One line of ``--name-status``: A(dded), M(odified), D(eleted), R(enamed), C(opied)..."""

    status: str  # the letter only
    path: str
    old_path: str | None = None  # renames and copies

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name


@dataclass(frozen=True, slots=True)
class Commit:
    """A commit of the batch: when, its subject, what it changed and the items it names."""

    sha: str
    time: datetime
    subject: str
    changes: tuple[Change, ...]
    items: frozenset[str]  # items of the batch named in the subject or by changed files


def _run(root: Path, args: list[str], stdin: bytes | None = None) -> bytes:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "-c", "core.quotePath=false", *args],
            input=stdin,
            capture_output=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except FileNotFoundError as exc:
        raise SourceError("git is not installed (no 'git' on PATH)") from exc
    except subprocess.TimeoutExpired as exc:
        raise SourceError(f"git {args[0]} took longer than {GIT_TIMEOUT_SECONDS:.0f} s") from exc
    if done.returncode != 0:
        err = done.stderr.decode("utf-8", errors="replace").strip().splitlines() or ["failed"]
        if "not a git repository" in err[0]:
            raise SourceError(f"{root} is not a git repository")
        raise SourceError(f"git {args[0]} in {root}: {err[0]}")
    return done.stdout


def _git(root: Path, *args: str) -> str:
    return _run(root, list(args)).decode("utf-8", errors="replace")


def _has_commits(root: Path) -> bool:
    if _git(root, "rev-parse", "--is-inside-work-tree").strip() != "true":
        raise SourceError(f"{root} is not a git work tree")
    try:
        _git(root, "rev-parse", "--verify", "--quiet", "HEAD")
    except SourceError:
        return False
    return True


def _unquote(path: str) -> str:
    # core.quotePath=false leaves only paths with control characters or quotes quoted.
    if len(path) >= 2 and path[0] == path[-1] == '"':
        return path[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")
    return path


def _parse(out: str) -> Iterable[tuple[str, datetime, str, tuple[Change, ...]]]:
    for entry in out.split("\x1e"):
        if not entry.strip():
            continue
        header, _, rest = entry.partition("\n")
        fields = header.split("\x1f")
        if len(fields) != 3:
            continue
        changes = []
        for line in rest.splitlines():
            parts = line.split("\t")
            if len(parts) < 2 or not parts[0]:
                continue
            status = parts[0][0]
            if status in "RC" and len(parts) >= 3:
                changes.append(Change(status, _unquote(parts[2]), _unquote(parts[1])))
            else:
                changes.append(Change(status, _unquote(parts[1])))
        yield fields[0], datetime.fromisoformat(fields[1]), fields[2], tuple(changes)


def _log(root: Path, *selection: str) -> str:
    return _git(
        root,
        "log",
        "--no-color",
        "--no-merges",
        "-M",
        "--name-status",
        f"--format={_FORMAT}",
        *selection,
    )


def batch_commits(root: Path, batch_id: str) -> list[Commit]:
    """The batch's commits on HEAD, oldest first (see the module docstring for the rule).

    Raises SourceError when git is missing or ``root`` is not a repository; a repository
    without commits has none.
    """
    if not _has_commits(root):
        return []
    by_subject = _log(
        root,
        "--fixed-strings",
        "--regexp-ignore-case",
        f"--grep=PRP-{batch_id}",
        f"--grep=batch {batch_id}",
        f"--grep=batch-{batch_id}",
        f"--grep=batch_{batch_id}",
        f"--grep=batch #{batch_id}",
        f"--grep=batch_id: {batch_id}",
        f"--grep=batch: {batch_id}",
    )
    # --full-diff: list every file the commit changed, not only the ones the pathspec names.
    by_files = _log(root, "--full-diff", "--", f":(glob)**/PRP-{batch_id}.*")
    commits: dict[str, Commit] = {}
    for sha, when, subject, changes in (*_parse(by_subject), *_parse(by_files)):
        if sha in commits:
            continue
        file_items = {
            item
            for c in changes
            for name in (c.name, PurePosixPath(c.old_path).name if c.old_path else "")
            if (item := item_of_name(name, batch_id)) is not None
        }
        if not file_items and not subject_names_batch(subject, batch_id):
            continue  # the grep matched the body only, or a neighbouring batch
        items = frozenset(mentioned_items(subject, batch_id) | file_items)
        commits[sha] = Commit(sha, when, subject, changes, items)
    return sorted(commits.values(), key=lambda c: (c.time, c.sha))


def _blobs(root: Path, specs: list[str]) -> list[bytes | None]:
    """Contents of ``rev:path`` objects (``None`` when missing or too large), in order."""
    if not specs:
        return []
    out = _run(root, ["cat-file", "--batch"], ("\n".join(specs) + "\n").encode())
    found: list[bytes | None] = []
    pos = 0
    for _ in specs:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        pos = end + 1
        if len(header) != 3 or header[1] != b"blob":
            found.append(None)
            continue
        size = int(header[2])
        found.append(out[pos : pos + size] if size <= MAX_BLOB_BYTES else None)
        pos += size + 1
    return found


def front_matter_only(root: Path, commit: Commit, paths: list[Change]) -> bool:
    """Whether each of ``paths`` (modified or renamed files) changed in its front matter alone."""
    specs = []
    for change in paths:
        specs += [f"{commit.sha}^:{change.old_path or change.path}", f"{commit.sha}:{change.path}"]
    blobs = _blobs(root, specs)
    for old, new in zip(blobs[::2], blobs[1::2], strict=True):
        if old is None or new is None:
            return False
        _, old_body = split_front_matter(old.decode("utf-8", errors="replace"))
        new_front, new_body = split_front_matter(new.decode("utf-8", errors="replace"))
        if new_front is None or old_body.strip() != new_body.strip():
            return False
    return True
