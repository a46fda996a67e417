"""What an agent is told, and the output file it leaves behind in context/agent_outputs/."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from orchestrate.core.config import Config
from orchestrate.core.store import Task, task_name

ERROR_TAIL = 2000  # characters of the previous attempt's error given to a retry
OVERVIEW, STATE = "project_overview.md", "current_state.md"
INSTRUCTIONS = """\
You are working in {cwd}. Do what the task asks there; other agents may be working on other tasks
in this project at the same time. The sections below are the project's shared context. When you
are done, reply with a short summary of what you did and what the next person should know: it is
saved as this task's output, which the tasks that build on this one are given."""


def output_path(cfg: Config, task_id: int) -> Path:
    return cfg.context.directory / "agent_outputs" / f"{task_name(task_id)}_output.md"


def prompt(
    task: Task, cfg: Config, cwd: Path | None = None, edits: Mapping[Path, Callable[[str], str]] | None = None
) -> tuple[str, list[str]]:
    """The prompt for one attempt at `task`, and notes for its log about context left out.

    `edits` change a context file's text on its way into the prompt: an extension that keeps a
    file knows newer text than the disk holds.
    """
    where = cfg.context.directory
    files = [(f"Project overview ({OVERVIEW})", where / OVERVIEW), (f"Current state ({STATE})", where / STATE)]
    files += [(f"Output of {task_name(d)}, which this task builds on", output_path(cfg, d)) for d in task.depends_on]
    files += [(f"Context file {name}", cfg.root / name) for name in task.context_files]
    sections = [f"# Task {task.name}\n\n{task.description}", INSTRUCTIONS.format(cwd=cwd or cfg.root)]
    notes, room = [], cfg.context.prompt_max_kb * 1024
    for title, path in files:
        try:
            size = path.stat().st_size
            if size <= min(cfg.context.inline_max_kb * 1024, room):
                text = path.read_bytes()[:size].decode(errors="replace")
                text = (edits[path](text) if edits and path in edits else text).strip()
                sections.append(f"## {title}\n\n{text}")
                room -= size
            else:  # bounded whatever accumulates: the agent can open the file itself
                sections.append(f"## {title}\n\n{path} ({size // 1024} KB) is too large to include: read it there.")
        except OSError as exc:
            notes.append(f"{path}: {exc.strerror}; left out of the prompt")
    if task.attempts and task.error:
        sections.append(f"## The previous attempt failed\n\n{task.error[-ERROR_TAIL:]}")
    return "\n\n".join(sections) + "\n", notes


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file in the same directory and a rename: readers never see half a file."""
    os.replace(write_aside(path, text), path)


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
