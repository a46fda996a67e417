"""workspace: worktree: each task in its own checkout, on its own branch, set up before each attempt;
whatever the agent leaves uncommitted is committed on the branch afterwards. On a PostgreSQL queue
the branches travel between machines through the git remote (remote.py)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from orchestrate.core.attempt import Attempt
from orchestrate.core.config import Config
from orchestrate.core.extension import Extension
from orchestrate.core.head import Head
from orchestrate.core.states import Stop
from orchestrate.core.store import Task
from orchestrate.workspace import git, remote, settings
from orchestrate.workspace.branches import measure
from orchestrate.workspace.changes import diff
from orchestrate.workspace.git import task_branch
from orchestrate.workspace.shell import shell


def worktree(cfg: Config, task: Task) -> Path | None:
    """The task's own checkout in worktree mode; None when it works in the project directory."""
    return cfg.runtime_dir / "worktrees" / task.name if (task.workspace or settings(cfg).mode) == "worktree" else None


def sources(task: Task) -> list[int]:
    """The tasks whose branches the task's may start from: its own (an earlier attempt's), its
    dependencies', its parent's."""
    return [task.id, *task.depends_on, *([task.parent] if task.parent else [])]


async def prepare(cfg: Config, repo: git.Repository, task: Task, path: Path) -> str | None:
    """Check out the task's branch in `path`, made on its first attempt and kept for the retries:
    from its dependencies' branches, so chains build on each other and a task after several starts
    from their merge; with none, from the branch of the task that queued it, so a plan's subtasks
    build on it; else from HEAD. Why not."""
    if (path / ".git").exists():
        return None
    await git.output(cfg.root, "worktree", "prune")  # forgets a worktree whose directory was deleted by hand
    name = task_branch(task.id)
    fresh = await git.output(cfg.root, "rev-parse", "--verify", "-q", f"refs/heads/{name}") is None
    bases = [f"refs/heads/{task_branch(t)}" for t in task.depends_on or ([task.parent] if task.parent else [])]
    bases = [b for b in bases if fresh and await git.output(cfg.root, "rev-parse", "--verify", "-q", b)] or ["HEAD"]
    where = ["-b", name, str(path), bases[0]] if fresh else [str(path), name]
    if (done := await git.run(cfg.root, "worktree", "add", *where)).code:
        return f"cannot make a worktree for {task.name}: {done.err.strip()}"
    if len(bases) > 1 and (done := await git.run(path, *repo.identity, "merge", "-q", "--no-edit", *bases[1:])).code:
        conflicts = await git.output(path, "diff", "--name-only", "--diff-filter=U") or ""
        await git.run(cfg.root, "worktree", "remove", "--force", str(path))
        await git.run(cfg.root, "branch", "-D", name)  # the next attempt merges afresh
        shown = " and ".join(b.removeprefix("refs/heads/") for b in bases)
        why = f"they conflict in {', '.join(conflicts.split())}" if conflicts.strip() else done.problem
        return f"cannot start {task.name} from the merge of {shown}: {why}"
    for name in settings(cfg).files:  # untracked files the work needs, such as .env
        if (cfg.root / name).is_file():
            (path / repo.prefix / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(cfg.root / name, path / repo.prefix / name)
    return None


async def commit(cfg: Config, repo: git.Repository, task: Task, path: Path) -> str | None:
    """Commit what the agent left uncommitted on the task's branch, so nothing it did is lost;
    but not the workspace_files copied in (a .env stays out of the history), nor a queue or runtime
    files of orchestrate's that a command run there made. Why it failed, if it did."""
    own = (f":(exclude,glob)**/{cfg.task_queue.database.name}*", ":(exclude,glob)**/.orchestrate/**")
    steps: list[tuple[str, ...]] = [("add", "--all", "--", ".", *own)]
    steps += [("-C", repo.prefix or ".", "reset", "-q", "--", *settings(cfg).files)] if settings(cfg).files else []
    for args in steps:
        if (done := await git.run(path, *args)).code:
            return f"cannot commit {task.name}'s work on {task_branch(task.id)}: {done.problem}"
    if (await git.run(path, "diff", "--cached", "--quiet")).code == 0:
        return None  # nothing staged
    message = f"{task.name}: {task.description}"
    if (done := await git.run(path, *repo.identity, "commit", "-q", "--no-verify", "-m", message)).code:
        return f"cannot commit {task.name}'s work on {task_branch(task.id)}: {done.problem}"
    return None


async def remove(cfg: Config, task: Task) -> str | None:
    """Remove the task's worktree (its branch stays) unless it holds uncommitted changes; why not."""
    path = cfg.runtime_dir / "worktrees" / task.name
    if not path.exists():
        return None
    done = await git.run(cfg.root, "worktree", "remove", str(path))
    return (done.err.strip() or "git failed") if done.code else None


class Worktrees(Extension):
    def __init__(self, project: git.Project) -> None:
        self.project = project
        self.unmeasured = True  # the worktrees' disk changed since `status` last had it measured
        self.measuring: asyncio.Future[int] | None = None
        # git's own record of the worktrees (.git/worktrees) takes one change at a time: a prune or
        # an add that reads another's half-made entry fails ("failed to read .../commondir")
        self.bookkeeping = asyncio.Lock()

    async def started(self, head: Head) -> None:
        self.repo, self.log, self.cfg = await self.project.repository(), head.once, head.cfg
        self.remote = await remote.found(head.cfg) if self.repo else None  # None on SQLite: one machine
        (head.cfg.runtime_dir / ".gitignore").write_text("*\n")  # logs, snapshots, worktrees: none is the project's

    async def beat(self) -> None:
        """Measure the worktrees for `status` after attempts changed them: in a thread, as it walks
        every file, and never two walks at once."""
        if self.unmeasured and (self.measuring is None or self.measuring.done()):
            self.unmeasured, self.measuring = False, asyncio.ensure_future(asyncio.to_thread(measure, self.cfg))

    async def stopping(self) -> None:
        if self.measuring:
            await self.measuring
        if self.unmeasured:  # the last attempts' worktrees, for `status` after the head is gone
            await asyncio.to_thread(measure, self.cfg)

    async def workdir(self, attempt: Attempt) -> None:
        if (tree := worktree(attempt.cfg, attempt.task)) is None:
            return
        attempt.worktree = tree
        if self.repo is None:
            return attempt.fail("not a git repository, so it has no worktree")
        attempt.cwd = tree / self.repo.prefix

    async def before(self, attempt: Attempt) -> None:
        if attempt.worktree is None or self.repo is None:
            return
        if self.remote and (failed := await self.remote.bring(sources(attempt.task))):
            return attempt.fail(failed)  # what it would start from may be on another machine
        async with self.bookkeeping:
            failed = await prepare(attempt.cfg, self.repo, attempt.task, attempt.worktree)
        if failed:
            return attempt.fail(failed)
        if not attempt.cwd.is_dir():  # the project is a directory the branch does not have yet
            where = self.repo.prefix.rstrip("/")
            return attempt.fail(f"{where} is not in {attempt.task.name}'s worktree: commit it to the repository first")
        if setup := settings(attempt.cfg).setup:
            await shell(attempt, "setup", setup)

    async def after(self, attempt: Attempt) -> None:
        tree, task = attempt.worktree, attempt.task
        if tree is None or self.repo is None or not (tree / ".git").exists():
            return
        if failed := await commit(attempt.cfg, self.repo, task, tree):
            return attempt.fail(failed)
        if self.remote and (failed := await self.remote.send(task)):  # its work would not travel
            self.log(f"{task.name}: {failed}")
            attempt.fail(failed)
        attempt.changes = await diff(attempt.cfg.root, f"HEAD...{task_branch(task.id)}")

    async def settled(self, attempt: Attempt) -> None:
        """A cancelled task's worktree goes once its leftovers are committed; a merged one's too."""
        self.unmeasured |= attempt.worktree is not None
        if attempt.worktree and attempt.stopped is Stop.CANCELLED:
            await self.tidy(attempt)

    async def tidy(self, attempt: Attempt) -> None:
        async with self.bookkeeping:
            problem = await remove(attempt.cfg, attempt.task)
        if problem:
            self.log(f"{attempt.task.name}: kept its worktree: {problem}")
