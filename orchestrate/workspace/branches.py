"""Worktrees and task branches as the commands see them: merge, clean, what show prints and the size status reads."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from orchestrate.api import USAGE_FILE
from orchestrate.cli.render import size
from orchestrate.core.config import Config
from orchestrate.core.errors import ConfigError, OrchestrateError
from orchestrate.core.states import Status
from orchestrate.core.store import Task
from orchestrate.workspace.git import run_sync as git
from orchestrate.workspace.git import task_branch

# `show` imports this module: asyncio and the head's git coroutines are imported only where the
# repository is changed, in merge, tidy and clean.


def require_repository(root: Path) -> None:
    """Worktree mode needs a git repository with a commit to branch from: say so before anything runs."""
    if git(root, "rev-parse", "--git-dir").code:
        raise ConfigError(
            f"workspace: worktree needs a git repository, and {root} is not in one;"
            " run `git init` and commit, or use workspace: shared"
        )
    if git(root, "rev-parse", "--verify", "-q", "HEAD").code:
        raise ConfigError(f"workspace: worktree needs a commit to branch from; {root} has none yet: commit once")


def worktrees(cfg: Config) -> Path:
    return cfg.runtime_dir / "worktrees"


def disk_usage(path: Path) -> int:
    """Bytes under `path`, as du counts them (links not followed)."""
    total = 0
    for top, dirs, files in os.walk(path):
        for name in files + dirs:
            try:
                total += os.lstat(os.path.join(top, name)).st_blocks * 512
            except OSError:
                continue
    return total


def measure(cfg: Config) -> int:
    """Walk every task worktree and record their bytes where `status` reads them (api.USAGE_FILE),
    and return them. Slow with big worktrees: for `clean`, `merge` and the head's worker threads."""
    import json
    import tempfile  # imported here, beside a walk that costs far more: `show` and `add` import this module

    folder = worktrees(cfg)
    try:
        found = [Path(e.path) for e in os.scandir(folder) if e.is_dir()]
    except OSError:
        return 0  # no worktrees folder: nothing to measure, and status reports none
    measured_at = time.time()
    total = sum(disk_usage(tree) for tree in found)
    with contextlib.suppress(OSError):  # the runtime folder was removed meanwhile: the next measurement writes it
        with tempfile.NamedTemporaryFile("w", dir=cfg.runtime_dir, prefix=f".{USAGE_FILE}.", delete=False) as out:
            out.write(json.dumps({"bytes": total, "measured_at": measured_at}))
        os.replace(out.name, cfg.runtime_dir / USAGE_FILE)  # renamed over: a reader never sees half a record
    return total


def branch_lines(cfg: Config, task: Task) -> list[str]:
    """What `show` prints of a task's branch: its state, and its commits and diffstat against the current branch."""
    name = task_branch(task.id)
    waiting = task.status in (Status.PENDING, Status.RUNNING)
    if git(cfg.root, "rev-parse", "--verify", "-q", f"refs/heads/{name}").code:
        return [_field("branch", f"{name} (not created yet)")] if waiting else []  # made when an attempt starts
    commits = git(cfg.root, "log", "--oneline", f"HEAD..{name}").out.splitlines()
    tree = worktrees(cfg) / task.name
    fields = [("branch", name + _state(cfg.root, name, bool(commits), waiting))]
    fields += [("worktree", str(tree))] if tree.exists() else []
    fields += [("commit", c) for c in commits]
    fields += [("", s.strip()) for s in git(cfg.root, "diff", "--stat", f"HEAD...{name}").out.splitlines()]
    return [_field(label, value) for label, value in fields]


def _field(label: str, value: str) -> str:
    return f"  {label + ':' if label else '':<12} {value}"


def _state(root: Path, name: str, ahead: bool, waiting: bool) -> str:
    """What to say of a branch beside its name: git finds a branch with no commits of its own in HEAD
    as it finds a merged one, so only where it started tells the two apart."""
    own = own_commits(root, name)
    if own is False:
        return f" (no commits{' of its own' if ahead else ''}{' yet' if waiting else ''})"
    if ahead:
        return ""  # its commits follow
    return " (merged into the current branch)" if own else " (no commits beyond the current branch)"


def own_commits(root: Path, name: str) -> bool | None:
    """Whether branch `name` holds commits beyond the one it was created at; None when its reflog no
    longer says where that was (reflogs off, or expired)."""
    log = git(root, "reflog", "show", "--format=%H %gs", f"refs/heads/{name}").out.splitlines()
    start, _, how = log[-1].partition(" ") if log else ("", "", "")
    if not how.startswith("branch: Created from"):
        return None
    done = git(root, "merge-base", "--is-ancestor", name, start)  # 0: at its start, or back behind it
    return {0: False, 1: True}.get(done.code)


def merge(cfg: Config, task: Task) -> list[str]:
    """Merge a completed task's branch into the current branch; what happened, line by line."""
    if task.status != Status.COMPLETED:
        raise OrchestrateError(f"{task.name} is {task.status}; only a completed task's branch is merged")
    name = task_branch(task.id)
    if git(cfg.root, "rev-parse", "--verify", "-q", f"refs/heads/{name}").code:
        raise OrchestrateError(f"{task.name} has no branch {name}: it did not run in a worktree")
    before = git(cfg.root, "rev-parse", "HEAD").out.strip()
    current = git(cfg.root, "rev-parse", "--abbrev-ref", "HEAD").out.strip()
    import asyncio

    from orchestrate.workspace import merging
    from orchestrate.workspace.git import Project

    repo = asyncio.run(Project(cfg).repository())
    if repo is None:
        raise OrchestrateError(f"{cfg.root} is not in a git repository")
    try:
        problem = asyncio.run(merging.merge(cfg, repo, task))
    except merging.Conflict as exc:
        problem = str(exc)
    if problem:
        raise OrchestrateError(f"{problem}; nothing was merged")
    after = git(cfg.root, "rev-parse", "HEAD").out.strip()
    tip = git(cfg.root, "rev-parse", name).out.strip()
    if after == before and own_commits(cfg.root, name) is False:
        return [f"nothing to merge: {name} has no commits of its own", *tidy(cfg, task)]
    how = "already merged" if after == before else "fast-forward" if after == tip else "merge commit"
    lines = [f"merged {name} into {current} ({how})"]
    return lines + tidy(cfg, task)


def tidy(cfg: Config, task: Task) -> list[str]:
    """Remove the task's worktree, if it has one: what happened."""
    return [_remove(cfg, task)[0]] if (worktrees(cfg) / task.name).exists() else []


def _remove(cfg: Config, task: Task) -> tuple[str, int | None]:
    """Remove the task's worktree unless git refuses: what happened, and the bytes freed (None: kept)."""
    import asyncio

    from orchestrate.workspace.worktrees import remove

    tree = worktrees(cfg) / task.name
    freed = disk_usage(tree)
    if problem := asyncio.run(remove(cfg, task)):
        return f"kept {tree}: {problem}", None
    return f"removed {tree} ({size(freed)})", freed


class Found(NamedTuple):
    task_id: int
    worktree: Path | None
    branch: str | None


def found(cfg: Config) -> Iterator[Found]:
    """Every task worktree and task branch there is, by task."""
    trees = {e.name: Path(e.path) for e in os.scandir(worktrees(cfg))} if worktrees(cfg).is_dir() else {}
    refs = git(cfg.root, "for-each-ref", "--format=%(refname:short)", "refs/heads/orchestrate/").out.split()
    branches = {r.removeprefix("orchestrate/"): r for r in refs}
    for name in sorted(trees.keys() | branches.keys()):
        if name.startswith("task_") and name[5:].isdigit():
            yield Found(int(name[5:]), trees.get(name), branches.get(name))


def clean(cfg: Config, lookup: Callable[[int], Task | None]) -> list[str]:
    """Remove the worktrees of cancelled tasks, and the worktrees and branches of completed tasks
    merged into the current branch. Never a running task's, never one with uncommitted changes."""
    lines, freed, removed, deleted = [], 0, 0, 0
    for item in found(cfg):
        task = lookup(item.task_id)
        if task is None or task.status not in (Status.CANCELLED, Status.COMPLETED):
            continue  # still to run, or unknown to this queue
        merged = item.branch and not git(cfg.root, "merge-base", "--is-ancestor", item.branch, "HEAD").code
        if task.status == Status.COMPLETED and not merged:
            continue  # still to review or to merge
        if item.worktree:
            if git(item.worktree, "status", "--porcelain").out.strip():
                lines.append(f"kept {item.worktree}: it has uncommitted changes")
                continue
            line, bytes_ = _remove(cfg, task)
            lines.append(line)
            if bytes_ is None:
                continue
            freed, removed = freed + bytes_, removed + 1
        if item.branch and task.status == Status.COMPLETED and not git(cfg.root, "branch", "-d", item.branch).code:
            lines.append(f"deleted branch {item.branch}")
            deleted += 1
    git(cfg.root, "worktree", "prune")
    lines.append(f"freed {size(freed)}: {removed} worktree(s) removed, {deleted} branch(es) deleted")
    return lines
