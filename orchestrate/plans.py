"""Plans: a task whose agent queues work, with `orchestrate add`, into the queue that runs it.

Every agent is given the environment that names its queue and its configuration (besides its
task, which the core gives), so the commands it runs reach the head's queue from any directory, a
worktree included, and create nothing there. A plan's prompt also says how to queue subtasks;
task_queue.max_subtasks bounds how many one task may queue; what a run queued is named in its
result, and so in its output file."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrate.core.extension import Extension
from orchestrate.core.store import task_name

if TYPE_CHECKING:
    from orchestrate.core.attempt import Attempt
    from orchestrate.core.config import Config
    from orchestrate.core.head import Head

MAX_SUBTASKS = 20  # task_queue.max_subtasks's default
DB_VAR, CONFIG_VAR = "ORCHESTRATE_DB", "ORCHESTRATE_CONFIG"  # what the CLI reads (cli/app.py)
QUEUED = "SELECT id, description FROM tasks WHERE parent = ? ORDER BY id"
PLAN = """\
## This task is a plan

Do it by splitting the work into subtasks and queueing each one with the `orchestrate` command,
which reaches this task's queue from here (its environment names the queue). Each subtask should
be small enough for one agent to finish in one run, and testable on its own: say in its
description what must be true when it is done and how to check it (a test to run, a command's
output). For example:

    orchestrate add "Add a --json flag to the report command; tests/test_report.py covers it"
    orchestrate add "Document the --json flag in the README's usage section"
    orchestrate add "Check the report changes fit together and the whole suite passes" --after task_012,task_013

`orchestrate add` prints the new task's id (task_012, say). `--after` takes the tasks that must
complete first, separated by commas: give a final task that checks the whole every subtask it
depends on. Subtasks are recorded as this task's; queue at most {limit} (task_queue.max_subtasks).
`orchestrate tasks --tree` shows the plan so far, `orchestrate show TASK` one task.{branch}
Once they are queued you are done: reply with the tasks you queued and what each one does."""
BRANCH = """
A subtask starts from this task's branch as it stands when the subtask first runs: commit what the
subtasks need before you queue them."""


def max_subtasks(cfg: Config) -> int:
    found: int = cfg.features.get("plans", MAX_SUBTASKS)
    return found


def plan_section(limit: int, worktree: bool) -> str:
    return PLAN.format(limit=limit, branch=BRANCH if worktree else "")


class Plans(Extension):
    async def started(self, head: Head) -> None:
        self.head, self.config = head, str(head.cfg.path.resolve())  # resolved once: a syscall per part

    async def workdir(self, attempt: Attempt) -> None:
        attempt.env[DB_VAR] = str(self.head.db)
        attempt.env[CONFIG_VAR] = self.config

    async def before(self, attempt: Attempt) -> None:
        if attempt.task.plan:
            attempt.sections.append(plan_section(max_subtasks(attempt.cfg), attempt.worktree is not None))

    async def after(self, attempt: Attempt) -> None:
        """Name in the run's result the tasks its agent queued, for its output file and those after it."""
        task = attempt.task
        queued = await self.head.queue.read(QUEUED, task.id)
        if queued:
            lines = "\n".join(f"- {task_name(i)}: {d.splitlines()[0] if d else ''}" for i, d in queued)
            message = f"{attempt.result.message}\n\n## Tasks it queued\n\n{lines}".lstrip()
            attempt.result = attempt.result._replace(message=message)
