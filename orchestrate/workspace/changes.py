"""What an attempt changed in a shared project directory, read from git rather than from the agent.

Before the agent runs, the project is snapshotted with `git add --all` into a private index and
object store under .orchestrate/, so the user's staging area and .git stay exactly as they were;
after it, that index is brought up to date the same way and compared with the tree written
before. The index and objects are the attempt's own and go when it is settled."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path

from orchestrate.core.attempt import Attempt
from orchestrate.core.extension import Extension
from orchestrate.core.head import Head
from orchestrate.workspace import git

OBJECTS = "git-objects"  # under the runtime directory: one store per running attempt


def objects(attempt: Attempt) -> Path:
    return attempt.cfg.runtime_dir / OBJECTS / attempt.task.name


def private(repo: git.Repository, store: Path, index: Path | None = None) -> dict[str, str]:
    """git's environment for a snapshot: a store of our own that reads the repository's."""
    own = {"GIT_OBJECT_DIRECTORY": str(store), "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(repo.objects)}
    return own | ({"GIT_INDEX_FILE": str(index)} if index else {})


def index(attempt: Attempt) -> Path:
    """The attempt's private index: the project as its last snapshot added it."""
    return objects(attempt).with_name(f"{attempt.task.name}.index")


async def snapshot(attempt: Attempt, repo: git.Repository) -> str | None:
    """A git tree of the project as it is now, untracked files included."""
    store, scratch = objects(attempt), index(attempt)
    store.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # starting from git's own index makes `add` read only what changed
        await asyncio.to_thread(shutil.copyfile, repo.index_file, scratch)  # many MB in a big repository
    own = private(repo, store, scratch)
    if not await _add(attempt, repo, own):
        return None
    tree = await git.output(attempt.cfg.root, "write-tree", own=own)
    return tree.strip() if tree else None


async def changed_since(attempt: Attempt, repo: git.Repository, tree: str) -> list[str] | None:
    """The files changed since the snapshot `tree`: the project added again to the index that
    snapshot left, which git compares with the tree as it is, with no tree of its own written."""
    own = private(repo, objects(attempt), index(attempt))
    return await diff(attempt.cfg.root, "--cached", tree, own=own) if await _add(attempt, repo, own) else None


async def _add(attempt: Attempt, repo: git.Repository, own: dict[str, str]) -> bool:
    return await git.output(attempt.cfg.root, "add", "--all", "--", ".", *repo.excludes, own=own) is not None


async def diff(cwd: Path, *revisions: str, own: dict[str, str] | None = None) -> list[str] | None:
    """The files changed between two revisions (`M src/app.py`), as seen from `cwd`."""
    out = await git.output(cwd, "diff", "--name-status", "--no-renames", "--relative", *revisions, own=own)
    return None if out is None else [" ".join(line.split("\t", 1)) for line in out.splitlines()]


class Changes(Extension):
    """Files changed, for an attempt that works in the project directory itself."""

    def __init__(self, project: git.Project) -> None:
        self.project = project
        self.before_trees: dict[int, str | None] = {}

    async def started(self, head: Head) -> None:
        self.repo = await self.project.repository()
        shutil.rmtree(head.cfg.runtime_dir / OBJECTS, ignore_errors=True)  # a dead head's attempts

    async def before(self, attempt: Attempt) -> None:
        if self.repo and attempt.worktree is None:
            self.before_trees[attempt.task.id] = await snapshot(attempt, self.repo)

    async def after(self, attempt: Attempt) -> None:
        start = self.before_trees.pop(attempt.task.id, None)
        if self.repo and start:
            attempt.changes = await changed_since(attempt, self.repo, start)

    async def settled(self, attempt: Attempt) -> None:
        if self.repo:  # in a thread: the objects of a big change can be many files
            index(attempt).unlink(missing_ok=True)
            await asyncio.to_thread(shutil.rmtree, objects(attempt), True)
