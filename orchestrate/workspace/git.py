"""Every git call orchestrate makes, through one wrapper that clears the GIT_* variables it
inherited: run from a hook or another tool, GIT_DIR or GIT_INDEX_FILE would point git elsewhere."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from orchestrate.core.config import Config

if TYPE_CHECKING:
    import asyncio

# The commands' own calls (show, merge, clean) start without asyncio: it is imported where awaited.
PIPE, DEVNULL = subprocess.PIPE, subprocess.DEVNULL
KEPT = {"GIT_EXEC_PATH", "GIT_SSH", "GIT_SSH_COMMAND", "GIT_SSL_CAINFO", "GIT_SSL_NO_VERIFY", "GIT_ASKPASS"}
KEPT |= {"GIT_CONFIG_COUNT", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM", "GIT_HTTP_PROXY_AUTHMETHOD"}


def environment(own: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without inherited GIT_* variables (as pre-commit's no_git_env), plus `own`."""
    kept = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GIT_") or k in KEPT or k.startswith(("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_"))
    }
    return kept | (own or {})


class Done(NamedTuple):
    code: int  # 127 when git cannot run
    out: str
    err: str

    @property
    def problem(self) -> str:
        """git's own first line about what went wrong."""
        return (self.err.strip() or self.out.strip() or "git failed").splitlines()[0]


async def run(cwd: Path, *args: str, own: dict[str, str] | None = None) -> Done:
    """Run git in `cwd` without blocking the loop."""
    import asyncio

    try:
        proc = await asyncio.create_subprocess_exec(
            "git", *args, cwd=cwd, env=environment(own), stdin=DEVNULL, stdout=PIPE, stderr=PIPE
        )
    except OSError as exc:
        return Done(127, "", f"cannot run git: {exc.strerror}")
    out, err = await proc.communicate()
    return Done(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))


async def output(cwd: Path, *args: str, own: dict[str, str] | None = None) -> str | None:
    """What git printed, or None if it failed (not a repository, or git not installed)."""
    done = await run(cwd, *args, own=own)
    return None if done.code else done.out


def run_sync(cwd: Path, *args: str) -> Done:
    """Run git in `cwd` and wait: for the commands, which have no loop."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, env=environment(), capture_output=True, text=True, errors="replace"
        )
    except OSError as exc:
        return Done(127, "", f"cannot run git: {exc.strerror}")
    return Done(done.returncode, done.stdout, done.stderr)


def task_branch(task_id: int) -> str:
    """The git branch a task works on in workspace: worktree."""
    return f"orchestrate/task_{task_id:03d}"  # as store.task_name


class Repository(NamedTuple):
    index_file: Path  # git's index, copied as a snapshot's starting point
    objects: Path  # git's object store, read but never written
    prefix: str  # where the project is inside the repository ("" at its top)
    identity: tuple[str, ...]  # for orchestrate's commits when the user has set no identity
    excludes: tuple[str, ...]  # pathspecs leaving orchestrate's files out of snapshots


def own_files(cfg: Config) -> list[str]:
    """orchestrate's own files, which change with every task, relative to the project."""
    db, ctx = cfg.task_queue.database, cfg.context.directory
    own = [cfg.runtime_dir, db, *(db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal"))]
    from orchestrate.context import COMPLETED, STATE  # only the head asks: the commands stay without asyncio

    own += [ctx / "agent_outputs", ctx / COMPLETED, ctx / STATE]
    return [str(p.relative_to(cfg.root)) for p in own if p.is_relative_to(cfg.root)]


class Project:
    """The project's repository as the head's git extensions share it, looked up once."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.found: asyncio.Future[Repository | None] | None = None

    async def repository(self) -> Repository | None:
        """The project's git repository, or None when it is not in one (or git is not installed)."""
        import asyncio

        if self.found is None:
            self.found = asyncio.ensure_future(self._look())
        return await self.found

    async def _look(self) -> Repository | None:
        root = self.cfg.root
        out = await output(root, "rev-parse", "--git-path", "index", "--git-path", "objects", "--show-prefix")
        if out is None:
            return None
        index, objects, prefix = [*out.splitlines(), ""][:3]
        anonymous = await output(root, "config", "user.email") is None
        identity = ("-c", "user.name=orchestrate", "-c", "user.email=orchestrate@localhost") if anonymous else ()
        # `git add` fails on a pathspec naming an ignored file, even one that excludes it
        ignored = (await output(root, "check-ignore", *own_files(self.cfg)) or "").splitlines()
        excludes = tuple(f":(exclude,literal){p}" for p in own_files(self.cfg) if p not in ignored)
        return Repository(root / index, root / objects, prefix, identity, excludes)
