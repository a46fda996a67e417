"""merge: auto: each task that completes and passes its checks is merged into the current branch,
one at a time; and the merge that `orchestrate merge` does by hand."""

from __future__ import annotations

import asyncio

from orchestrate.core.attempt import Attempt, Verdict
from orchestrate.core.config import Config
from orchestrate.core.extension import Extension
from orchestrate.core.head import Head
from orchestrate.core.states import Event
from orchestrate.core.store import Task
from orchestrate.workspace import git
from orchestrate.workspace.git import task_branch
from orchestrate.workspace.worktrees import Worktrees


class Conflict(Exception):
    """The merge stopped on a conflict, and was aborted."""


async def merge(cfg: Config, repo: git.Repository, task: Task) -> str | None:
    """Merge the task's branch into the current one, fast-forward when possible; None, or why not.
    A conflict is aborted, so the project is never left half-merged, and raises Conflict."""
    done = await git.run(cfg.root, *repo.identity, "merge", "--no-edit", task_branch(task.id))
    if done.code == 0:
        return None
    if conflicted := await git.output(cfg.root, "diff", "--name-only", "--diff-filter=U"):
        await git.output(cfg.root, "merge", "--abort")
        raise Conflict(f"merge conflict in {', '.join(conflicted.splitlines())}")
    return f"cannot merge {task_branch(task.id)}: {done.problem}"


class AutoMerge(Extension):
    def __init__(self, project: git.Project, worktrees: Worktrees) -> None:
        self.project, self.worktrees = project, worktrees
        self.lock = asyncio.Lock()  # one at a time: each merge starts from the one before
        self.merged: set[int] = set()

    async def started(self, head: Head) -> None:
        self.repo = await self.project.repository()

    async def accept(self, attempt: Attempt) -> None:
        if attempt.worktree is None or self.repo is None:
            return
        async with self.lock:
            if not await attempt.current():  # cancelled while it waited: nothing is merged
                return
            try:
                refused = await merge(attempt.cfg, self.repo, attempt.task)
            except Conflict as exc:  # a conflict needs a person: failed, not retried
                attempt.verdict = Verdict(Event.FAIL, str(exc))
                return
        if refused and attempt.verdict:  # say a dirty checkout: the work is done and verified, only the merge waits
            attempt.verdict = attempt.verdict._replace(error=f"completed but not merged: {refused}")
        else:
            self.merged.add(attempt.task.id)

    async def settled(self, attempt: Attempt) -> None:
        if attempt.task.id in self.merged:
            self.merged.discard(attempt.task.id)
            await self.worktrees.tidy(attempt)
