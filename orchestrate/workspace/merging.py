"""merge: auto: each task that completes and passes its checks is merged into the current branch,
one at a time (on a PostgreSQL queue, one machine at a time, through the remote); and the merge
that `orchestrate merge` does by hand."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3

from orchestrate.core.attempt import Attempt, Verdict
from orchestrate.core.config import Config
from orchestrate.core.errors import OrchestrateError
from orchestrate.core.extension import Extension
from orchestrate.core.head import Head
from orchestrate.core.queue import Queue
from orchestrate.core.states import Event
from orchestrate.core.store import Task
from orchestrate.workspace import git
from orchestrate.workspace.git import task_branch
from orchestrate.workspace.remote import Remote
from orchestrate.workspace.worktrees import Worktrees

MERGE_LOCK = 7_746_004  # pg_advisory_lock key: one machine merges at a time (postgres/dialect.py has 001 to 003)
LOCK_POLL_S = 0.1


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


async def merge_shared(cfg: Config, repo: git.Repository, task: Task, remote: Remote, queue: Queue) -> str | None:
    """merge, for one of several machines: under the queue's merge lock, the current branch first
    catches up with the remote's, and the merge lands on the remote or is undone here."""
    branch = (await git.output(cfg.root, "symbolic-ref", "-q", "--short", "HEAD") or "").strip()
    if not branch:  # a detached HEAD: no branch to share
        return await merge(cfg, repo, task)
    if refused := await lock(queue):
        return refused
    try:
        if refused := await remote.catch_up(branch):
            return refused
        before = (await git.output(cfg.root, "rev-parse", "HEAD") or "").strip()
        if refused := await merge(cfg, repo, task):
            return refused
        if refused := await remote.publish(branch):  # on the remote or nowhere: left here, the next catch-up fails
            await git.run(cfg.root, "reset", "-q", "--keep", before)
            return f"{refused}; the merge was undone"
        return None
    finally:
        await unlock(queue)


async def lock(queue: Queue) -> str | None:
    """Take the queue's merge lock, waiting while another machine holds it; why not. Tried, not
    waited for in the database: the head's one connection serves its whole loop."""
    try:
        while not (await queue.read("SELECT pg_try_advisory_lock(?)", MERGE_LOCK))[0][0]:
            await asyncio.sleep(LOCK_POLL_S)
    except (sqlite3.Error, OrchestrateError) as exc:
        return f"cannot take the queue's merge lock: {exc}"
    return None


async def unlock(queue: Queue) -> None:
    with contextlib.suppress(sqlite3.Error, OrchestrateError):  # the session is gone, and its lock with it
        await queue.read("SELECT pg_advisory_unlock(?)", MERGE_LOCK)


class AutoMerge(Extension):
    def __init__(self, project: git.Project, worktrees: Worktrees) -> None:
        self.project, self.worktrees = project, worktrees
        self.lock = asyncio.Lock()  # one at a time: each merge starts from the one before
        self.merged: set[int] = set()

    async def started(self, head: Head) -> None:
        self.repo, self.queue = await self.project.repository(), head.queue

    async def accept(self, attempt: Attempt) -> None:
        if attempt.worktree is None or self.repo is None:
            return
        async with self.lock:
            if not await attempt.current():  # cancelled while it waited: nothing is merged
                return
            try:
                if (remote := self.worktrees.remote) is None:
                    refused = await merge(attempt.cfg, self.repo, attempt.task)
                else:
                    refused = await merge_shared(attempt.cfg, self.repo, attempt.task, remote, self.queue)
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
