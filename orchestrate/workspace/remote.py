"""On a PostgreSQL queue, work travels between machines on git branches: each attempt's task branch
is pushed to the remote (`remote`, default origin), and the branches a task may start from are
fetched before its worktree is made, so that a dependency, a parent or an earlier attempt that ran
on another machine is where it would be had it run here; merge: auto brings the current branch up
to the remote's before merging into it, and pushes it after (merging.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from orchestrate.core.config import Config
from orchestrate.core.store import Task, task_name
from orchestrate.workspace import git, settings
from orchestrate.workspace.git import task_branch

log = logging.getLogger(__name__)
QUIET = {"GIT_TERMINAL_PROMPT": "0"}  # a head has no one to type a password: fail, never wait


class Unreachable(Exception):
    """The remote could not be read."""


def said(done: git.Done) -> str:
    """git's line on why a conversation with a remote failed: a push opens with `To URL`, so the
    line that names the refused ref, or git's error, is the one worth showing."""
    lines = [" ".join(line.split()) for line in done.err.splitlines() if line.strip()]
    found = [line for line in lines if line.startswith(("!", "fatal:", "error:"))]
    return (found or [done.problem])[0]


async def found(cfg: Config) -> Remote | None:
    """The remote task branches travel through: on a PostgreSQL queue, when the repository has it."""
    if cfg.features.get("postgres") is None:
        return None  # one machine: its branches are all there is
    name = settings(cfg).remote
    if await git.output(cfg.root, "remote", "get-url", name) is None:
        log.warning("%s has no git remote named %s: task branches stay on this machine", cfg.root, name)
        return None
    return Remote(cfg, name)


class Remote:
    """The git remote of a PostgreSQL queue's machines, as one head talks to it."""

    def __init__(self, cfg: Config, name: str) -> None:
        self.cfg, self.name = cfg, name
        self.lock = asyncio.Lock()  # one conversation at a time: two would contend for the same refs

    def tracking(self, branch: str) -> str:
        """Where this repository keeps what it last saw of the remote's `branch`."""
        return f"refs/remotes/{self.name}/{branch}"

    async def tips(self, refs: Sequence[str]) -> dict[str, str]:
        """The commit each of `refs` names, for those that exist."""
        if not refs:
            return {}  # for-each-ref with no pattern lists every ref
        out = await git.output(self.cfg.root, "for-each-ref", "--format=%(refname) %(objectname)", *refs) or ""
        return dict(line.split(" ", 1) for line in out.splitlines())

    async def fetch(self, branches: Sequence[str]) -> dict[str, str]:
        """Fetch those of `branches` the remote has into their remote-tracking refs; their tips, by
        branch. The remote is listed first: fetching a branch it lacks would fail them all."""
        heads = [f"refs/heads/{b}" for b in branches]
        listed = await git.run(self.cfg.root, "ls-remote", "--refs", self.name, *heads, own=QUIET)
        if listed.code:
            raise Unreachable(f"cannot read {self.name}: {said(listed)}")
        there = {ref: commit for commit, ref in (line.split("\t", 1) for line in listed.out.splitlines())}
        have = [b for b in branches if f"refs/heads/{b}" in there]
        known = await self.tips([self.tracking(b) for b in have])
        if stale := [b for b in have if known.get(self.tracking(b)) != there[f"refs/heads/{b}"]]:
            specs = [f"+refs/heads/{b}:{self.tracking(b)}" for b in stale]
            done = await git.run(self.cfg.root, "fetch", "-q", "--no-tags", "--no-write-fetch-head", self.name, *specs)
            if done.code:
                raise Unreachable(f"cannot fetch {', '.join(stale)} from {self.name}: {said(done)}")
        fetched = await self.tips([self.tracking(b) for b in have])  # pushed since it was listed: the newer
        return {b: fetched[self.tracking(b)] for b in have if self.tracking(b) in fetched}

    async def bring(self, task_ids: Sequence[int]) -> str | None:
        """Bring the branches of tasks `task_ids` up to the remote's where it holds newer work, never
        losing a local commit; why not, when the remote cannot be read."""
        async with self.lock:
            try:
                there = await self.fetch([task_branch(t) for t in task_ids])
            except Unreachable as exc:
                return str(exc)
            here = await self.tips([f"refs/heads/{b}" for b in there])
            for task_id in task_ids:
                if (branch := task_branch(task_id)) in there:
                    await self._forward(task_id, here.get(f"refs/heads/{branch}"), there[branch])
        return None

    async def _forward(self, task_id: int, here: str | None, there: str) -> None:
        """Fast-forward a task's branch from commit `here` (None: no such branch yet) to the remote's
        `there`: in its worktree when it has one, so that the checkout moves with it."""
        branch, tree = task_branch(task_id), self.cfg.runtime_dir / "worktrees" / task_name(task_id)
        if here == there or (here and await self._behind(there, here)):
            return  # the same, or ahead of the remote's: an attempt here whose push failed
        if here and not await self._behind(here, there):
            log.warning("%s: here and on %s each has commits the other lacks: kept this one", branch, self.name)
            return
        if here and (tree / ".git").exists():
            done = await git.run(tree, "merge", "--ff-only", "-q", there)
        else:  # a reflog line that is not "branch: Created from", which `show` reads as "no commits of its own"
            why = f"orchestrate: fetched from {self.name}"
            done = await git.run(self.cfg.root, "update-ref", "-m", why, f"refs/heads/{branch}", there, here or "")
        if done.code:
            log.warning("%s: cannot fast-forward to %s's: %s; kept as it was", branch, self.name, done.problem)

    async def _behind(self, commit: str, other: str) -> bool:
        """Whether `commit` is `other` or one of its ancestors."""
        return (await git.run(self.cfg.root, "merge-base", "--is-ancestor", commit, other)).code == 0

    async def send(self, task: Task) -> str | None:
        """Push the task's branch, force (it is the task's own), unless the remote already has its
        tip; why not, if the push failed."""
        branch = task_branch(task.id)
        ref = f"refs/heads/{branch}"
        async with self.lock:
            tips = await self.tips([ref, self.tracking(branch)])
            if tips.get(ref) in (None, tips.get(self.tracking(branch))):
                return None
            done = await git.run(self.cfg.root, "push", "-q", "--no-verify", self.name, f"+{ref}:{ref}", own=QUIET)
        if done.code:
            return f"cannot push {branch} to {self.name}, so its work cannot reach the other machines: {said(done)}"
        return None

    async def catch_up(self, branch: str) -> str | None:
        """Fast-forward the project's current `branch` to the remote's, which other machines merge
        into; why not (a remote it cannot read, or local commits the remote lacks)."""
        async with self.lock:
            try:
                there = await self.fetch([branch])
            except Unreachable as exc:
                return str(exc)
        if branch not in there:
            return None  # the remote has no such branch yet: the push makes it
        done = await git.run(self.cfg.root, "merge", "--ff-only", "-q", there[branch])
        return f"cannot fast-forward {branch} to {self.name}'s: {done.problem}" if done.code else None

    async def publish(self, branch: str) -> str | None:
        """Push the project's current `branch` (never force: it is everyone's); why not."""
        ref = f"refs/heads/{branch}"
        async with self.lock:
            done = await git.run(self.cfg.root, "push", "-q", "--no-verify", self.name, f"{ref}:{ref}", own=QUIET)
        return f"cannot push {branch} to {self.name}: {said(done)}" if done.code else None
