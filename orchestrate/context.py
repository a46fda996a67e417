"""What an agent is told, and what it leaves behind in context/."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from orchestrate.config import Config
from orchestrate.errors import QueueBusy
from orchestrate.store import Task, task_name

ERROR_TAIL = 2000  # characters of the previous attempt's error given to a retry
OVERVIEW, STATE, COMPLETED = "project_overview.md", "current_state.md", "completed_tasks.json"
BEGIN, END = "<!-- orchestrate:begin -->", "<!-- orchestrate:end -->"
RECENT = 20  # tasks listed in current_state.md's block; earlier ones are counted
PUBLISH_S = 0.5  # completed_tasks.json and current_state.md are rewritten at most this often
INSTRUCTIONS = """\
You are working in {cwd}. Do what the task asks there; other agents may be working on other tasks
in this project at the same time. The sections below are the project's shared context. When you
are done, reply with a short summary of what you did and what the next person should know: it is
saved as this task's output, which the tasks that build on this one are given."""


def output_path(cfg: Config, task_id: int) -> Path:
    return cfg.context.directory / "agent_outputs" / f"{task_name(task_id)}_output.md"


def prompt(task: Task, cfg: Config, block: str | None = None, cwd: Path | None = None) -> tuple[str, list[str]]:
    """The prompt for one attempt at `task`, and notes for its log about context left out.

    `block` is orchestrate's latest checklist when current_state.md has not been rewritten yet.
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
                text = (with_block(text, block) if block and path.name == STATE else text).strip()
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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")  # the head is the only writer: a fixed name is safe
    try:
        tmp.write_bytes(text.encode("utf-8", errors="surrogateescape"))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def iso(stamp: float | None) -> str:
    """As the commands' JSON prints times; "-" for none."""
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(stamp)) if stamp else "-"


def write_output(
    cfg: Config, task: Task, message: str, changes: Sequence[str] | None, checks: Sequence[str] = ()
) -> Path:
    """context/agent_outputs/task_NNN_output.md: what the agent said and did, for people and later tasks."""
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
    path = output_path(cfg, task.id)
    write_atomic(path, "\n".join(lines))
    return path


def entry(task: Task) -> str:
    """The task's entry in completed_tasks.json."""
    fields = ("description", "status", "agent", "output_file")
    return json.dumps({"id": task.name, **{f: getattr(task, f) for f in fields}, "finished_at": iso(task.finished_at)})


class Journal:
    """completed_tasks.json and orchestrate's block in current_state.md, as one head keeps them.

    They are rewritten at most every PUBLISH_S: a burst of completions costs one rewrite, however
    many tasks finished since the last, and a prompt built meanwhile gets the newest block.
    """

    def __init__(self, cfg: Config, block: Callable[[], Awaitable[str]], trouble: Callable[[str], None]) -> None:
        self.cfg, self.block, self.trouble = cfg, block, trouble
        self.entries: dict[int, str] = {}  # by task id, in the order the tasks finished
        self.stale = asyncio.Event()

    def load(self, finished: Iterable[Task]) -> None:
        """Start from the queue's record: a head killed mid-way may have left the files behind."""
        self.entries.update({t.id: entry(t) for t in finished})
        self.stale.set()

    def add(self, task: Task) -> None:
        self.entries.pop(task.id, None)  # a task retried by hand moves to the end
        self.entries[task.id] = entry(task)
        self.stale.set()

    async def fresh_block(self) -> str | None:
        """The newest block while current_state.md lags behind it, for a prompt."""
        return await self.block() if self.stale.is_set() else None

    async def keep(self) -> None:
        while True:
            await self.stale.wait()
            await self.publish()
            await asyncio.sleep(PUBLISH_S)

    async def publish(self) -> None:
        if not self.stale.is_set():
            return
        self.stale.clear()
        try:
            block = await self.block()
            write_atomic(self.cfg.context.directory / COMPLETED, "[\n" + ",\n".join(self.entries.values()) + "\n]\n")
            write_state(self.cfg, block)
        except OSError as exc:
            self.trouble(f"cannot update {self.cfg.context.directory} ({exc.strerror})")
        except BaseException as exc:  # stopped or locked out mid-way: the next publish, or the last, writes it
            self.stale.set()
            if not isinstance(exc, QueueBusy):
                raise
            self.trouble(f"cannot update {self.cfg.context.directory}: {exc}")


class Line(NamedTuple):
    """A task as current_state.md lists it."""

    id: int
    description: str
    status: str
    agent: str | None
    output_file: str | None
    summary: str | None  # the start of the agent's final message, or of its error


def state_block(recent: Sequence[Line], counts: dict[str, int]) -> str:
    """orchestrate's checklist of the most recent tasks, with counts for the earlier ones."""
    lines = [BEGIN, f"## Tasks (kept by orchestrate, {iso(time.time())})", ""]
    for t in sorted(recent):
        done, what = t.status == "completed", " ".join(t.description.split())[:100]
        note = {"completed": "done", "failed": "FAILED", "running": f"running on {t.agent}"}.get(t.status, t.status)
        summary = " ".join((t.summary or "").split())[:160]
        see = f"; output in {t.output_file}" if t.output_file else ""
        lines.append(
            f"- [{'x' if done else ' '}] {task_name(t.id)} {what} ({note}{see})" + (f": {summary}" if summary else "")
        )
    earlier = {s: n - sum(t.status == s for t in recent) for s, n in counts.items()}
    if sum(earlier.values()):
        listed = ", ".join(f"{n} {s}" for s, n in earlier.items() if n)
        lines += ["", f"Earlier tasks, not listed: {listed}. `orchestrate tasks` shows them all."]
    return "\n".join([*lines, END])


def with_block(text: str, block: str) -> str:
    """`text` with orchestrate's block replaced by `block`, or with `block` added at the end."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        return text + ("\n" if text and not text.endswith("\n") else "") + "\n" + block + "\n"
    return text[:start] + block + text[end + len(END) :]


def write_state(cfg: Config, block: str) -> None:
    """Replace orchestrate's block in current_state.md, keeping every byte a person wrote around it.

    A person may save the file while this runs. Their edit is kept: if the file was replaced
    meanwhile, start again from theirs; if they wrote into the old file after it was read, merge
    again from what they wrote.
    """
    path = cfg.context.directory / STATE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8", errors="surrogateescape", newline="") as old:  # made if absent
        ours = os.fstat(old.fileno()).st_ino
        while True:
            old.seek(0)
            text = old.read()
            merged = with_block(text, block)
            if os.stat(path).st_ino != ours:
                return write_state(cfg, block)  # an editor saved a new file meanwhile: merge into it
            write_atomic(path, merged)
            ours = os.stat(path).st_ino
            old.seek(0)
            if old.read() == text:
                return
