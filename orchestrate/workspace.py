"""Where a task runs, and what it changed there: read from git, never from the agent's own account."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from pathlib import Path
from typing import NamedTuple

from orchestrate.config import Config
from orchestrate.context import COMPLETED, STATE


async def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str | None:
    """What git printed, or None if it failed (not a repository, or git not installed)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "git",
            *args,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except OSError:
        return None
    out, _ = await proc.communicate()
    return out.decode(errors="replace") if proc.returncode == 0 else None


def _orchestrates(cfg: Config) -> list[str]:
    """Pathspecs that leave out orchestrate's own files: they change with every task."""
    db, ctx = cfg.task_queue.database, cfg.context.directory
    own = [cfg.runtime_dir, db, *(db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal"))]
    own += [ctx / "agent_outputs", ctx / COMPLETED, ctx / STATE]
    return [f":(exclude,literal){p.relative_to(cfg.root)}" for p in own if p.is_relative_to(cfg.root)]


class Repository(NamedTuple):
    index_file: Path  # git's index, copied as a snapshot's starting point
    objects: Path  # git's object store, read but never written


async def repository(cfg: Config) -> Repository | None:
    """The project's git repository, or None when it is not in one (or git is not installed)."""
    out = await git(cfg.root, "rev-parse", "--git-path", "index", "--git-path", "objects")
    if out is None:
        return None
    index, objects = out.splitlines()[:2]
    return Repository(cfg.root / index, cfg.root / objects)


def _env(cfg: Config, repo: Repository, index: Path | None = None) -> dict[str, str]:
    """Snapshots use a private index and object store (git's own are only read): the user's
    staging area and .git are left exactly as they were."""
    own = {
        "GIT_OBJECT_DIRECTORY": str(cfg.runtime_dir / "git-objects"),
        "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(repo.objects),
    }
    return os.environ | own | ({"GIT_INDEX_FILE": str(index)} if index else {})


async def snapshot(cfg: Config, repo: Repository | None, name: str) -> str | None:
    """A git tree of the project as it is now, untracked files included; None outside a repository."""
    if repo is None:
        return None
    scratch = cfg.runtime_dir / f"{name}.index"
    with contextlib.suppress(OSError):  # starting from git's own index makes `add` read only what changed
        shutil.copyfile(repo.index_file, scratch)
    (cfg.runtime_dir / "git-objects").mkdir(parents=True, exist_ok=True)
    env = _env(cfg, repo, scratch)
    try:
        added = await git(cfg.root, "add", "--all", "--", ".", *_orchestrates(cfg), env=env)
        tree = await git(cfg.root, "write-tree", env=env) if added is not None else None
    finally:
        scratch.unlink(missing_ok=True)
    return tree.strip() if tree else None


async def changes(cfg: Config, repo: Repository | None, before: str | None, after: str | None) -> list[str] | None:
    """The files that changed between two snapshots (`M src/app.py`); None without both snapshots."""
    if not (repo and before and after):
        return None
    env = _env(cfg, repo)
    diff = await git(cfg.root, "diff", "--name-status", "--no-renames", "--relative", before, after, env=env)
    return None if diff is None else [" ".join(line.split("\t", 1)) for line in diff.splitlines()]
