"""The context journal: completed_tasks.json and orchestrate's block in current_state.md, kept by
an extension of the head from what the queue records."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from orchestrate.core.config import Config
from orchestrate.core.errors import QueueBusy
from orchestrate.core.extension import Extension
from orchestrate.core.prompt import STATE, iso, write_atomic
from orchestrate.core.states import FINISHED, Status, sql_list
from orchestrate.core.store import SELECT_TASKS, STATES, Task, task_from_row, task_name

if TYPE_CHECKING:
    from orchestrate.core.attempt import Attempt
    from orchestrate.core.head import Head

COMPLETED = "completed_tasks.json"
BEGIN, END = "<!-- orchestrate:begin -->", "<!-- orchestrate:end -->"
RECENT = 20  # tasks listed in current_state.md's block; earlier ones are counted
PUBLISH_S = 0.5  # completed_tasks.json and current_state.md are rewritten at most this often
RETRY_S = 5.0  # after a failed rewrite (a full disk, say), when to try again


def entry(task: Task) -> str:
    """The task's entry in completed_tasks.json."""
    fields = ("description", "status", "agent", "output_file")
    return json.dumps({"id": task.name, **{f: getattr(task, f) for f in fields}, "finished_at": iso(task.finished_at)})


class Journal(Extension):
    """completed_tasks.json and orchestrate's block in current_state.md, as one head keeps them.

    They are rewritten at most every PUBLISH_S: a burst of completions costs one rewrite, however
    many tasks finished since the last, and a prompt built meanwhile gets the newest block.
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.entries: dict[int, str] = {}  # by task id, in the order the tasks finished
        self.stale = asyncio.Event()
        self.keeper: asyncio.Future[None] | None = None

    async def started(self, head: Head) -> None:
        """Start from the queue's record: a head killed mid-way may have left the files behind."""
        self.queue, self.trouble = head.queue, head.once
        rows = await self.queue.read(
            f"{SELECT_TASKS} WHERE t.status IN {sql_list(FINISHED)} ORDER BY t.finished_at, t.id"
        )
        self.entries.update({t.id: entry(t) for t in map(task_from_row, rows)})
        self.stale.set()
        self.keeper = asyncio.ensure_future(self.keep())

    async def before(self, attempt: Attempt) -> None:
        if self.stale.is_set():  # a task that finished a moment ago is in the prompt before the file is rewritten
            block = await self.block()
            attempt.edits[self.cfg.context.directory / STATE] = lambda text: with_block(text, block)

    async def settled(self, attempt: Attempt) -> None:
        if (done := attempt.recorded) is not None and done.status in FINISHED:
            self.add(done)

    async def stopping(self) -> None:
        if self.keeper:
            self.keeper.cancel()
            await asyncio.gather(self.keeper, return_exceptions=True)
            await self.publish()

    def add(self, task: Task) -> None:
        self.entries.pop(task.id, None)  # a task retried by hand moves to the end
        self.entries[task.id] = entry(task)
        self.stale.set()

    async def block(self) -> str:
        recent = await self.queue.read(
            """SELECT id, description, status, agent, output_file,
                   substr(coalesce(nullif(trim(result), ''), error), 1, 300)
               FROM tasks ORDER BY id DESC LIMIT ?""",
            RECENT,
        )
        counts = dict(await self.queue.read("SELECT status, n FROM task_counts"))
        return state_block([Line(*r) for r in recent], {s: counts.get(s, 0) for s in STATES})

    async def keep(self) -> None:
        while True:
            await self.stale.wait()
            await asyncio.sleep(PUBLISH_S if await self.publish() else RETRY_S)

    async def publish(self) -> bool:
        """Rewrite both files if anything changed; False if they could not be written (tried again later)."""
        if not self.stale.is_set():
            return True
        self.stale.clear()
        try:
            block = await self.block()
            write_atomic(self.cfg.context.directory / COMPLETED, "[\n" + ",\n".join(self.entries.values()) + "\n]\n")
            write_state(self.cfg, block)
            return True
        except (OSError, QueueBusy) as exc:
            self.stale.set()
            self.trouble(f"cannot update {self.cfg.context.directory}: {getattr(exc, 'strerror', None) or exc}")
            return False
        except BaseException:  # stopped mid-way: the last publish writes it
            self.stale.set()
            raise


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
        done, what = t.status == Status.COMPLETED, " ".join(t.description.split())[:100]
        notes: dict[str, str] = {
            Status.COMPLETED: "done",
            Status.FAILED: "FAILED",
            Status.RUNNING: f"running on {t.agent}",
        }
        note = notes.get(t.status, t.status)
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
