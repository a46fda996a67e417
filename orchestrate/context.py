"""The shared context in context/: what of it each prompt carries, and what the head writes back
(each task's output file, completed_tasks.json and orchestrate's block in current_state.md), kept
from what the queue records."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

from orchestrate import completed
from orchestrate.configfile import SharedContext
from orchestrate.core import store
from orchestrate.core.agent import output_path
from orchestrate.core.config import Config
from orchestrate.core.errors import QueueBusy
from orchestrate.core.extension import Extension
from orchestrate.core.states import FINISHED, Status
from orchestrate.core.store import Task, task_name

if TYPE_CHECKING:
    from orchestrate.core.attempt import Attempt
    from orchestrate.core.head import Head

OVERVIEW, STATE, COMPLETED = "project_overview.md", "current_state.md", "completed_tasks.json"
BEGIN, END = "<!-- orchestrate:begin -->", "<!-- orchestrate:end -->"
RECENT = 20  # tasks listed in current_state.md's block; earlier ones are counted
PUBLISH_S = 0.5  # completed_tasks.json and current_state.md are written at most this often
RETRY_S = 5.0  # after a failed rewrite (a full disk, say), when to try again
CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC  # a file written whole, as open(..., "wb")


def entry(task: Task) -> str:
    """The task's entry in completed_tasks.json."""
    return completed.entry(task.id, task.description, task.status, task.agent, task.output_file, task.finished_at)


def settings(cfg: Config) -> SharedContext:
    """The context feature's settings in `cfg` (the defaults if it has none)."""
    found: SharedContext = cfg.features.get("context", SharedContext())
    return found


def sections(task: Task, cfg: Config, state: Callable[[str], str] | None = None) -> tuple[list[str], list[str]]:
    """The prompt's context sections for `task`, and notes for its log about files left out.

    `state` rewrites current_state.md's text on its way in: the journal knows a newer block
    than the file holds until its next rewrite.
    """
    where = str(cfg.context.directory)  # strings, not Paths: this runs before every prompt
    current = os.path.join(where, STATE)
    files: list[tuple[str, str | Path]] = [(f"Project overview ({OVERVIEW})", os.path.join(where, OVERVIEW))]
    files.append((f"Current state ({STATE})", current))
    files += [(f"Output of {task_name(d)}, which this task builds on", output_path(cfg, d)) for d in task.depends_on]
    files += [(f"Context file {name}", cfg.root / name) for name in task.context_files]
    shared = settings(cfg)
    found, notes, room = [], [], shared.prompt_max_kb * 1024
    for title, path in files:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO named there must not hold the head
            try:
                size = os.fstat(fd).st_size
                data = os.read(fd, size) if size <= min(shared.inline_max_kb * 1024, room) else None
            finally:
                os.close(fd)
        except OSError as exc:
            notes.append(f"{path}: {exc.strerror}; left out of the prompt")
            continue
        if data is None:  # bounded whatever accumulates: the agent can open the file itself
            found.append(f"## {title}\n\n{path} ({size // 1024} KB) is too large to include: read it there.")
            continue
        # a NUL cannot travel in an argv, and would fail every prompt that quotes it there
        text = data.decode(errors="replace").replace("\0", "\ufffd")
        text = (state(text) if state and str(path) == current else text).strip()
        found.append(f"## {title}\n\n{text}")
        room -= size
    return found, notes


class Outputs(Extension):
    """Each finished task's output file, context/agent_outputs/task_NNN_output.md, written as soon
    as its run is recorded and before the head goes on: a task that builds on it quotes it."""

    async def started(self, head: Head) -> None:
        self.cfg, self.trouble = head.cfg, head.once

    async def settled(self, attempt: Attempt) -> None:
        if (done := attempt.recorded) is None or done.status not in FINISHED:
            return
        path = output_path(self.cfg, done.id)
        try:
            write_atomic(path, output(done, attempt.result.message, attempt.changes, attempt.checks))
        except OSError as exc:
            self.trouble(f"cannot write output files in {path.parent} ({exc.strerror})")


class Context(Extension):
    """Each prompt carries the shared context; with `journal`, the head also keeps it up to date."""

    def __init__(self, cfg: Config, journal: Journal | None) -> None:
        self.cfg, self.journal = cfg, journal

    async def before(self, attempt: Attempt) -> None:
        block = await self.journal.fresh_block() if self.journal else None
        found, notes = sections(attempt.task, self.cfg, (lambda text: with_block(text, block)) if block else None)
        attempt.sections += found
        attempt.log.write("".join(f"=== orchestrate: {note} ===\n" for note in notes).encode())


class Journal(Extension):
    """completed_tasks.json and orchestrate's block in current_state.md, as one head keeps them.

    They are written at most every PUBLISH_S: a burst of completions costs one write, however many
    tasks finished since the last. The entries go to the file's end (completed.append) unless a
    task finished again after `orchestrate retry`, whose old entry goes with a rebuild. Nothing
    that grows with the queue runs on the loop or stays in memory: the file is checked against the
    queue in a worker thread once the head is up, and rebuilt there if it differs. The block is
    kept in memory and read again only once the queue changed (this head's attempts, or another
    process's commit), at most every PUBLISH_S.
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.new: dict[int, str] = {}  # entries not yet in the file, by task id, in the order they finished
        self.held: completed.Held | None = None  # what the file holds, once checked
        self.stale = asyncio.Event()
        self.keeper: asyncio.Future[None] | None = None
        self.replaced: tuple[TextIO, int] | None = None  # the current_state.md last rewritten over
        self.work: asyncio.Future[bool] | None = None  # the last write of completed_tasks.json
        # orchestrate's block: what it lists, as last read (when due, at most every PUBLISH_S), and as last written
        self.shown: tuple[list[Line], dict[str, int]] | None = None
        self.block = self.filed = ""
        self.due, self.read_at = True, -PUBLISH_S
        self.version: int | None = None  # the queue's data_version when the block was last due

    async def started(self, head: Head) -> None:
        self.queue, self.trouble = head.queue, head.once
        # the whole queue's finished rows, in a worker thread (a shared queue's extension reads them its own way)
        self.rows: Callable[[], Iterator[Sequence[Any]]] = functools.partial(finished_rows, head.db)
        self.stale.set()  # a head killed mid-way may have left the files behind

    async def beat(self) -> None:
        if self.keeper is None:  # once every extension has started: the first check reads the whole queue
            self.keeper = asyncio.ensure_future(self.keep())
        if (version := await self.queue.data_version()) != self.version:  # another process changed the queue
            self.version = version
            self.changed()

    async def before(self, attempt: Attempt) -> None:
        self.changed()  # a task claimed: running now

    async def settled(self, attempt: Attempt) -> None:
        if (done := attempt.recorded) is not None and done.status in FINISHED:
            self.add(done)
            self.read_at = -PUBLISH_S  # the next prompt (a task after this one, say) lists it done
        self.changed()

    async def stopping(self) -> None:
        if self.keeper:
            self.keeper.cancel()
            await asyncio.gather(self.keeper, return_exceptions=True)
        if self.work:
            await asyncio.gather(self.work, return_exceptions=True)
        self.changed()
        self.read_at = -PUBLISH_S  # the last block is read whenever the one before was
        await self.publish()  # which brings over what was written into the file it last replaced
        self.catch_up()

    def add(self, task: Task) -> None:
        """Enter a finished task (this head's or, on a shared queue, another's) in completed_tasks.json."""
        self.new.pop(task.id, None)  # a task retried by hand moves to the end
        self.new[task.id] = entry(task)
        self.stale.set()

    def changed(self) -> None:
        self.due = True
        self.stale.set()

    async def fresh_block(self) -> str | None:
        """The newest block, for a prompt: current_state.md may lag behind it by PUBLISH_S."""
        if self.due and time.monotonic() - self.read_at >= PUBLISH_S:
            self.due, self.read_at = False, time.monotonic()
            recent = await self.queue.read(
                """SELECT id, description, status, agent, output_file,
                       substr(coalesce(nullif(trim(result), ''), error), 1, 300)
                   FROM tasks ORDER BY id DESC LIMIT ?""",
                RECENT,
            )
            counts = dict(await self.queue.read("SELECT status, n FROM task_counts"))
            lines = [Line(*r) for r in recent]
            counted: dict[str, int] = {s: counts.get(s, 0) for s in Status}
            if (lines, counted) != self.shown:
                self.shown, self.block = (lines, counted), state_block(lines, counted)
        return self.block or None

    async def keep(self) -> None:
        while True:
            await self.stale.wait()
            await asyncio.sleep(PUBLISH_S if await self.publish() else RETRY_S)
            self.catch_up()

    def catch_up(self) -> None:
        if self.replaced:
            replaced, self.replaced = self.replaced, None
            try:
                late_edits(self.cfg, replaced)
            except OSError as exc:
                self.trouble(f"cannot update {self.cfg.context.directory}: {exc.strerror}")

    async def publish(self) -> bool:
        """Write what changed; False if it could not be written (tried again later)."""
        if not self.stale.is_set():
            return True
        self.stale.clear()
        try:
            await self.enter()
            if (block := await self.fresh_block()) and block != self.filed:
                self.catch_up()
                self.replaced, self.filed = write_state(self.cfg, block), block
            return True
        except (OSError, QueueBusy, sqlite3.Error) as exc:
            self.stale.set()
            self.trouble(f"cannot update {self.cfg.context.directory}: {getattr(exc, 'strerror', None) or exc}")
            return False
        except BaseException:  # stopped mid-way: the last publish writes it
            self.stale.set()
            raise

    async def enter(self) -> None:
        """Bring completed_tasks.json up to date, in a worker thread that runs on if the head stops
        meanwhile (the last publish waits for it, and skips what it wrote)."""
        batch, self.new = self.new, {}
        self.work = asyncio.ensure_future(
            asyncio.to_thread(self.entered, self.cfg.context.directory / COMPLETED, batch)
        )
        try:
            if not await asyncio.shield(self.work):
                self.new = {**batch, **self.new}
                self.stale.set()
        except BaseException:
            self.new = {**batch, **self.new}  # tried again; those finished meanwhile are the newer
            raise

    def entered(self, path: Path, batch: dict[int, str]) -> bool:
        """Enter `batch` at the file's end, or rebuild it from the whole queue when it is new to
        this head, was changed by someone else, or holds an entry that is no more; False if it
        changed under the append (tried again). In a worker thread, one at a time."""
        if self.held is None or self.held.stamp != completed.stamp(path):
            self.held = self.checked(path)
        marks = self.held.marks
        lines = [(i, e) for i, e in batch.items() if completed.marked(marks, i) != completed.mark(e)]
        if any(completed.marked(marks, i) for i, _ in lines):  # finished again (orchestrate retry)
            self.held = completed.rebuild(path, self.rows())  # which holds `batch`: committed before it read
        elif lines:
            self.held = completed.append(path, lines, self.held)
        return self.held is not None

    def checked(self, path: Path) -> completed.Held:
        """What the file holds, once it holds what the queue records."""
        held = completed.holds(path)
        return held if held and completed.matches(held.marks, self.rows()) else completed.rebuild(path, self.rows())


def finished_rows(db: Path) -> Iterator[Sequence[Any]]:
    """The queue's finished tasks as completed.ROWS reads them, on a connection of their own."""
    conn = store.connect(db)
    conn.row_factory = None  # plain tuples: a third faster to make
    try:
        yield from conn.execute(completed.ROWS)
    finally:
        conn.close()


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
    lines = [BEGIN, f"## Tasks (kept by orchestrate, {iso(time.time())})", "", *map(checklist_line, sorted(recent))]
    earlier = {s: n - sum(t.status == s for t in recent) for s, n in counts.items()}
    if sum(earlier.values()):
        listed = ", ".join(f"{n} {s}" for s, n in earlier.items() if n)
        lines += ["", f"Earlier tasks, not listed: {listed}. `orchestrate tasks` shows them all."]
    return "\n".join([*lines, END])


# The block is made again for each prompt after a change, and most of its lines are as before.
@functools.lru_cache(maxsize=4 * RECENT)
def checklist_line(t: Line) -> str:
    """`t`'s line in orchestrate's block."""
    done, what = t.status == Status.COMPLETED, " ".join(t.description.replace("\0", "\ufffd").split())[:100]
    notes: dict[str, str] = {Status.COMPLETED: "done", Status.FAILED: "FAILED", Status.RUNNING: f"running on {t.agent}"}
    note = notes.get(t.status, t.status)
    summary = " ".join((t.summary or "").replace("\0", "\ufffd").split())[:160]
    see = f"; output in {t.output_file}" if t.output_file else ""
    return f"- [{'x' if done else ' '}] {task_name(t.id)} {what} ({note}{see})" + (f": {summary}" if summary else "")


def with_block(text: str, block: str) -> str:
    """`text` with orchestrate's block replaced by `block`, or with `block` added at the end."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        return text + ("\n" if text and not text.endswith("\n") else "") + "\n" + block + "\n"
    return text[:start] + block + text[end + len(END) :]


def write_state(cfg: Config, block: str) -> tuple[TextIO, int]:
    """Replace orchestrate's block in current_state.md, keeping every byte a person wrote around it.

    A person may save the file while this runs. Their edit is kept: if the file was replaced
    meanwhile, start again from theirs; if they wrote into the old file after it was read, merge
    again from what they wrote. Returns the file it replaced, still open, and how far it was read:
    one who opened it just before the rename may write there a moment later (`late_edits`).
    """
    path = cfg.context.directory / STATE
    path.parent.mkdir(parents=True, exist_ok=True)
    old = open(path, "a+", encoding="utf-8", errors="surrogateescape", newline="")  # noqa: SIM115 (returned)
    try:
        ours = os.fstat(old.fileno()).st_ino
        while True:
            old.seek(0)
            text = old.read()
            merged = with_block(text, block)
            if os.stat(path).st_ino != ours:
                old.close()
                return write_state(cfg, block)  # an editor saved a new file meanwhile: merge into it
            write_atomic(path, merged)
            ours = os.stat(path).st_ino
            old.seek(0)
            if old.read() == text:
                return old, old.tell()
    except BaseException:
        old.close()
        raise


def late_edits(cfg: Config, replaced: tuple[TextIO, int]) -> None:
    """Append to current_state.md what a person wrote into the file `write_state` replaced, after
    it was read (they had opened it just before the rename), and let that file go."""
    old, read = replaced
    with old:
        old.seek(read)
        if extra := old.read():
            with open(cfg.context.directory / STATE, "a", encoding="utf-8", errors="surrogateescape", newline="") as f:
                f.write(extra)


def write_atomic(path: Path | str, text: str) -> None:
    """Write via a temporary file in the same directory and a rename: readers never see half a file.

    Every finished task's output file comes through here, so it makes the directory only when it
    is missing and writes with plain descriptors: pathlib's parsing and open()'s buffering checks
    took longer than the write itself."""
    where, name = os.path.split(path)
    tmp = os.path.join(where, f".{name}.tmp")  # the head is the only writer: a fixed name is safe
    data = memoryview(text.encode("utf-8", errors="surrogateescape"))
    try:
        try:
            fd = os.open(tmp, CREATE, 0o666)
        except FileNotFoundError:  # no directory yet, or a person removed it
            os.makedirs(where, exist_ok=True)
            fd = os.open(tmp, CREATE, 0o666)
        try:
            while data:
                data = data[os.write(fd, data) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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
