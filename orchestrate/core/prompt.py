"""What an agent is told, and the output file it leaves behind in context/agent_outputs/."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from orchestrate.core.config import Config
from orchestrate.core.store import Task, task_name

ERROR_TAIL = 2000  # characters of the previous attempt's error given to a retry
INSTRUCTIONS = """\
You are working in {cwd}. Do what the task asks there; other agents may be working on other tasks
in this project at the same time. The sections below are the project's shared context. When you
are done, reply with a short summary of what you did and what the next person should know: it is
saved as this task's output, which the tasks that build on this one are given."""


def output_path(cfg: Config, task_id: int) -> Path:
    return cfg.context.directory / "agent_outputs" / f"{task_name(task_id)}_output.md"


def prompt(task: Task, cwd: Path, sections: Sequence[str] = ()) -> str:
    """The prompt for one attempt at `task`: what to do and where, the sections extensions add
    (the shared context), and on a retry what went wrong the time before."""
    parts = [f"# Task {task.name}\n\n{task.description}", INSTRUCTIONS.format(cwd=cwd), *sections]
    if task.attempts and task.error:
        parts.append(f"## The previous attempt failed\n\n{task.error[-ERROR_TAIL:]}")
    return "\n\n".join(parts) + "\n"


def write_aside(path: Path, text: str) -> Path:
    """Write `text` beside `path` under a temporary name, for a rename into place once it is due."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")  # the head is the only writer: a fixed name is safe
    try:
        tmp.write_bytes(text.encode("utf-8", errors="surrogateescape"))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def iso(stamp: float | None) -> str:
    """As the commands' JSON prints times; "-" for none."""
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(stamp)) if stamp else "-"


def output(task: Task, message: str, changes: Sequence[str] | None, checks: Sequence[str] = ()) -> str:
    """The text of context/agent_outputs/task_NNN_output.md: what the agent said and did, for
    people and later tasks."""
    took = f"{task.finished_at - task.started_at:.0f} s" if task.finished_at and task.started_at else "-"
    facts = {
        "agent": task.agent,
        "status": task.status,
        "attempts": task.attempts,
        "started": iso(task.started_at),
        "duration": took,
        "cost": f"${task.cost_usd:.4f}" if task.cost_usd is not None else None,
        "tokens": f"{task.input_tokens or 0} in, {task.output_tokens or 0} out" if task.input_tokens else None,
        "error": task.error,
    }
    lines = [f"# {task.name}: {task.description.splitlines()[0]}", ""]
    lines += [f"- {key}: {value}" for key, value in facts.items() if value is not None]
    if "\n" in task.description.strip():
        lines += ["", "## Task", "", task.description.strip()]
    lines += ["", "## Files changed", ""]
    if changes is None:
        lines.append("(not a git repository, so not tracked)")
    else:
        lines += [f"- {change}" for change in changes] or ["(none)"]
    if checks:
        lines += ["", "## Checks", "", *(f"- {check}" for check in checks)]
    lines += ["", "## Final message", "", message or "(none)", ""]
    return "\n".join(lines)
