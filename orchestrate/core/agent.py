"""The agent contract: what an agent is told, how a CLI is called headless and its output read,
and where the output file each task leaves behind goes (the context feature writes it)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

from orchestrate.core.config import AgentConfig, Config
from orchestrate.core.store import Task, task_name


class Result(NamedTuple):
    """What one run of an agent produced, read from the CLI's own structured output."""

    ok: bool
    message: str  # the final answer, verbatim
    error: str | None = None
    cost_usd: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    session_id: str | None = None
    limited_until: float | None = None  # set when the CLI reported a rate or usage limit; 0: no reset time
    unauthorized: bool = False  # the CLI said its credentials were refused: the agent's fault, not the task's
    stale_session: bool = False  # the CLI refused to resume the session it was given


Argv = tuple[list[str], str | None]  # an argv, and what goes on its stdin


class Output(Protocol):
    """Reads a run's output line by line as it streams, then judges it."""

    def feed(self, line: str, stderr: bool) -> None: ...
    def finish(self, exit_code: int) -> Result: ...


class Adapter(Protocol):
    """An agent type: one module each (claude, codex, gemini, and command here in the core)."""

    Reader: Callable[[AgentConfig], Output]
    detaches: bool  # its tools may leave processes in sessions of their own: sweep after each run
    resumes: bool  # it can continue a session an earlier run left (Result.session_id)

    def argv(self, command: tuple[str, ...], prompt: str, session: str | None, budget: float | None) -> Argv:
        """The full argv, continuing `session` and spending at most `budget` USD where the CLI can;
        and what goes on stdin: the prompt, when it does not travel in the argv."""
        ...


def reset_time(text: str, now: float | None = None) -> float:
    """When a rate-limit message says the limit resets; 0.0 if it names no time."""
    now = time.time() if now is None else now
    if after := re.search(r"(?:in|after) (\d+(?:\.\d+)?) ?(s|sec|seconds?|m|min|minutes?|h|hours?)\b", text):
        return now + float(after.group(1)) * {"s": 1, "m": 60, "h": 3600}[after.group(2)[0]]
    return 0.0


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
