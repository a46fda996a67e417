"""What an agent is told, and what it leaves behind in context/."""

from __future__ import annotations

import os
import time
from pathlib import Path

from orchestrate.config import Config
from orchestrate.store import Task

ERROR_TAIL = 2000  # characters of the previous attempt's error given to a retry


def prompt(task: Task, cfg: Config) -> str:
    """The prompt for one attempt at `task`."""
    parts = [
        f"# Task {task.name}\n\n{task.description}",
        f"You are working in {cfg.root}. Do what the task asks there, then reply with a short summary"
        " of what you changed.",
    ]
    if task.attempts and task.error:
        parts.append(f"## The previous attempt failed\n\n{task.error[-ERROR_TAIL:]}")
    return "\n\n".join(parts) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file in the same directory and a rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")  # the head is the only writer: a fixed name is safe
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_output(task: Task, cfg: Config, status: str, agent: str, message: str, **facts: object) -> Path:
    """context/agent_outputs/task_NNN_output.md: what the agent said and what came of it."""
    path = cfg.context.directory / "agent_outputs" / f"{task.name}_output.md"
    lines = [
        f"# {task.name}: {task.description.splitlines()[0]}",
        "",
        f"- agent: {agent}",
        f"- status: {status}",
    ]
    lines += [
        f"- {key.replace('_', ' ')}: {value}" for key, value in facts.items() if value not in (None, "")
    ]
    lines += [
        f"- finished: {time.strftime('%Y-%m-%dT%H:%M:%S%z')}",
        "",
        "## Final message",
        "",
        message or "(none)",
        "",
    ]
    write_atomic(path, "\n".join(lines))
    return path
