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
from orchestrate.store import Task, task_branch

PIPE = asyncio.subprocess.PIPE


async def run_git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """git's exit status, standard output and standard error (127 when git cannot run)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "git", *args, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=PIPE, stderr=PIPE
        )
    except OSError as exc:
        return 127, "", f"cannot run git: {exc.strerror}"
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


async def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str | None:
    """What git printed, or None if it failed (not a repository, or git not installed)."""
    code, out, _ = await run_git(cwd, *args, env=env)
    return None if code else out


def _orchestrates(cfg: Config) -> list[str]:
    """orchestrate's own files, which change with every task, relative to the project."""
    db, ctx = cfg.task_queue.database, cfg.context.directory
    own = [cfg.runtime_dir, db, *(db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal"))]
    own += [ctx / "agent_outputs", ctx / COMPLETED, ctx / STATE]
    return [str(p.relative_to(cfg.root)) for p in own if p.is_relative_to(cfg.root)]


class Repository(NamedTuple):
    index_file: Path  # git's index, copied as a snapshot's starting point
    objects: Path  # git's object store, read but never written
    prefix: str  # where the project is inside the repository ("" at its top)
    identity: tuple[str, ...]  # for orchestrate's commits when the user has set no identity
    excludes: tuple[str, ...]  # pathspecs leaving orchestrate's files out of snapshots


async def repository(cfg: Config) -> Repository | None:
    """The project's git repository, or None when it is not in one (or git is not installed)."""
    out = await git(cfg.root, "rev-parse", "--git-path", "index", "--git-path", "objects", "--show-prefix")
    if out is None:
        return None
    index, objects, prefix = [*out.splitlines(), ""][:3]
    anonymous = await git(cfg.root, "config", "user.email") is None
    identity = ("-c", "user.name=orchestrate", "-c", "user.email=orchestrate@localhost") if anonymous else ()
    # `git add` fails on a pathspec naming an ignored file, even one that excludes it
    ignored = (await git(cfg.root, "check-ignore", *_orchestrates(cfg)) or "").splitlines()
    excludes = tuple(f":(exclude,literal){p}" for p in _orchestrates(cfg) if p not in ignored)
    return Repository(cfg.root / index, cfg.root / objects, prefix, identity, excludes)


def _env(cfg: Config, repo: Repository, index: Path | None = None) -> dict[str, str]:
    """Snapshots use a private index and object store (git's own are only read): the user's
    staging area and .git are left exactly as they were."""
    (cfg.runtime_dir / "git-objects").mkdir(parents=True, exist_ok=True)
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
    env = _env(cfg, repo, scratch)
    try:
        added = await git(cfg.root, "add", "--all", "--", ".", *repo.excludes, env=env)
        tree = await git(cfg.root, "write-tree", env=env) if added is not None else None
    finally:
        scratch.unlink(missing_ok=True)
    return tree.strip() if tree else None


async def changes(cfg: Config, repo: Repository | None, *revisions: str | None) -> list[str] | None:
    """The files changed between two snapshots, or on a task's branch (`M src/app.py`); None
    without a repository or a snapshot."""
    if not (repo and revisions and all(revisions)):
        return None
    env = _env(cfg, repo)
    diff = await git(cfg.root, "diff", "--name-status", "--no-renames", "--relative", *map(str, revisions), env=env)
    return None if diff is None else [" ".join(line.split("\t", 1)) for line in diff.splitlines()]


def worktree(cfg: Config, task: Task) -> Path | None:
    """The task's own checkout in worktree mode; None when it works in the project directory."""
    return cfg.runtime_dir / "worktrees" / task.name if (task.workspace or cfg.workspace.mode) == "worktree" else None


async def prepare(cfg: Config, repo: Repository, task: Task, path: Path) -> str | None:
    """Check out the task's branch in `path`, made on its first attempt (from its one dependency's
    branch, so chains build on each other, or else from HEAD) and kept for the retries; why not."""
    if (path / ".git").exists():
        return None
    await git(cfg.root, "worktree", "prune")  # forgets a worktree whose directory was deleted by hand
    name = task_branch(task.id)
    if await git(cfg.root, "rev-parse", "--verify", "-q", f"refs/heads/{name}") is not None:
        where = [str(path), name]
    else:
        dep = f"refs/heads/{task_branch(task.depends_on[0])}" if len(task.depends_on) == 1 else None
        base = dep if dep and await git(cfg.root, "rev-parse", "--verify", "-q", dep) else "HEAD"
        where = ["-b", name, str(path), base]
    code, _, err = await run_git(cfg.root, "worktree", "add", *where)
    if code:
        return f"cannot make a worktree for {task.name}: {err.strip()}"
    for name in cfg.workspace.files:  # untracked files the work needs, such as .env
        if (cfg.root / name).is_file():
            (path / repo.prefix / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(cfg.root / name, path / repo.prefix / name)
    return None


async def commit(cfg: Config, repo: Repository, task: Task, path: Path) -> None:
    """Commit what the agent left uncommitted on the task's branch, so nothing it did is lost;
    but not the workspace_files copied in: a .env stays out of the history."""
    await git(path, "add", "--all")
    if cfg.workspace.files:
        await git(path / repo.prefix, "reset", "-q", "--", *cfg.workspace.files)
    if await git(path, "diff", "--cached", "--quiet") is None:  # exit 1: something is staged
        await git(path, *repo.identity, "commit", "-q", "--no-verify", "-m", f"{task.name}: {task.description}")


async def merge(cfg: Config, repo: Repository, task: Task) -> str | None:
    """Merge the task's branch into the current one, fast-forward when possible; None, or why not.
    A conflict is aborted, so the project is never left half-merged."""
    code, out, err = await run_git(cfg.root, *repo.identity, "merge", "--no-edit", task_branch(task.id))
    if code == 0:
        return None
    if conflicted := await git(cfg.root, "diff", "--name-only", "--diff-filter=U"):
        await git(cfg.root, "merge", "--abort")
        return f"merge conflict in {', '.join(conflicted.splitlines())}"
    return f"cannot merge {task_branch(task.id)}: {(err.strip() or out.strip() or 'git failed').splitlines()[0]}"


async def remove(cfg: Config, task: Task) -> str | None:
    """Remove the task's worktree (its branch stays) unless it holds uncommitted changes; why not."""
    path = cfg.runtime_dir / "worktrees" / task.name
    if not path.exists():
        return None
    code, _, err = await run_git(cfg.root, "worktree", "remove", str(path))
    return (err.strip() or "git failed") if code else None
