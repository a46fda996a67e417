"""The agents' logs on a shared queue: each head's log files stay where they are, and a copy of
each task's, in pieces, goes to the task_logs table as it grows, so that `orchestrate logs` and
the dashboard read any task's log from any machine.

A piece is what a head's log file of a task gained since the last one, keyed by where it starts
in that file. The database keeps the newest CAP bytes of each task's log; a reader says how many
bytes it left out, and which machine's file still has them."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from orchestrate import api
from orchestrate.core.config import Config
from orchestrate.core.errors import OrchestrateError, QueueBusy
from orchestrate.core.extension import Extension
from orchestrate.core.queue import Write
from orchestrate.core.store import Task

if TYPE_CHECKING:
    from orchestrate.core.attempt import Attempt
    from orchestrate.core.head import Head
    from orchestrate.postgres import Settings

CAP = 1 << 20  # what the database keeps of one task's log: its newest bytes
PIECE = 64 << 10  # the most one row holds: the cap deletes whole rows, so it keeps at least CAP - PIECE
BLOCK = 1 << 20  # what a reader takes from a file at a time
FOLLOW_S = 0.5  # how often `logs -f` looks again: pieces arrive once a second
SHIP_WAIT_S = 10.0  # how long `logs -f` waits, after the task ended, for its head to copy the rest
# Everything this head copied of the task, and where its earlier runs' output ended: where to go on from.
SENT = """SELECT greatest(
        (SELECT max(start + octet_length(data)) FROM task_logs WHERE task_id = ? AND head = ?),
        (SELECT max(log_end) FROM runs WHERE task_id = ? AND head = ? AND claim < ?), 0),
    (SELECT coalesce(sum(octet_length(data)), 0) FROM task_logs WHERE task_id = ?)"""
PUT = """INSERT INTO task_logs (task_id, head, start, data) SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM tasks WHERE id = ?)
    ON CONFLICT (task_id, head, start) DO UPDATE SET data = excluded.data"""  # a commit whose answer was lost
# Past the cap, the oldest pieces go; another head's are older than this one's, which runs the task now.
TRIM = """DELETE FROM task_logs WHERE task_id = ? AND (head, start) IN (SELECT head, start FROM (
        SELECT head, start, sum(octet_length(data)) OVER (ORDER BY head = ? DESC, start DESC, head
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS newer
        FROM task_logs WHERE task_id = ?) pieces WHERE newer > ?)"""


@dataclass
class Shipped:
    """How far one task's log file has been copied to the database."""

    path: Path
    claim: int  # the attempt it is copied for
    sent: int | None = None  # where the next piece starts; None until the database says
    stored: int = 0  # bytes of the task's log in the database, at most (so that trimming is rare)
    ended: bool = False  # its attempt has settled: forget it once the rest is sent


class ShippedLogs(Extension):
    """Copies what each running agent's log gained into task_logs every second, the rest when its
    attempt settles, and what failed to go when the head stops; never stops the head."""

    def __init__(self, cfg: Config, settings: Settings) -> None:
        self.cfg, self.me = cfg, settings.head
        self.logs: dict[int, Shipped] = {}  # by task id
        self.lock = asyncio.Lock()  # one copy at a time: the beat's and a settling attempt's would overlap

    async def started(self, head: Head) -> None:
        self.head = head

    async def beat(self) -> None:
        busy = self.head.busy
        for task_id, slot in busy.items():
            assert slot.task is not None
            self._track(task_id, slot.task)
        for task_id in [t for t, entry in self.logs.items() if t not in busy and not entry.ended]:
            del self.logs[task_id]  # seen between its attempt's settling and its slot coming free: all sent
        await self._ship(list(self.logs))

    async def settled(self, attempt: Attempt) -> None:
        self._track(attempt.task.id, attempt.task).ended = True
        await self._ship([attempt.task.id])

    async def stopping(self) -> None:
        await self._ship(list(self.logs))

    def _track(self, task_id: int, task: Task) -> Shipped:
        found = self.logs.get(task_id)
        if found is None or found.claim != task.claim:  # a new attempt goes on from the last one's end
            found = self.logs[task_id] = Shipped(self.cfg.root / str(task.log_file), task.claim)
        return found

    async def _ship(self, task_ids: list[int]) -> None:
        async with self.lock:
            entries = {t: self.logs[t] for t in task_ids if t in self.logs}  # another copy may have ended one
            try:
                for task_id, entry in entries.items():
                    if entry.sent is None:
                        args = (task_id, self.me, task_id, self.me, entry.claim, task_id)
                        [(entry.sent, entry.stored)] = await self.head.queue.read(SENT, *args)
                news, writes = {}, []
                for task_id, entry in entries.items():
                    start, data = news[task_id] = self._unsent(entry)
                    writes += self._writes(task_id, entry.stored, start, data)
                if writes:
                    await self.head.queue.write(*writes)
            except (QueueBusy, sqlite3.Error) as exc:  # the logs stay in their files; the next beat tries again
                self.head.once(f"cannot copy the agents' logs to the database ({exc}); they are in .orchestrate/logs")
                return
            for task_id, (start, data) in news.items():
                entry = entries[task_id]
                entry.sent, entry.stored = start + len(data), min(entry.stored + len(data), CAP)
                if entry.ended and self.logs.get(task_id) is entry:
                    del self.logs[task_id]

    def _unsent(self, entry: Shipped) -> tuple[int, bytes]:
        """What the file gained since the last piece, and where that starts: no more than the cap
        keeps, so a flood of output is never read whole."""
        assert entry.sent is not None
        try:
            with entry.path.open("rb") as log:
                start = max(entry.sent, os.fstat(log.fileno()).st_size - CAP)
                log.seek(start)
                return start, log.read(CAP)
        except FileNotFoundError:  # its attempt has not written its header yet
            return entry.sent, b""
        except OSError as exc:
            self.head.once(f"cannot read {entry.path} to copy it to the database: {exc.strerror}")
            return entry.sent, b""

    def _writes(self, task_id: int, stored: int, start: int, data: bytes) -> list[Write]:
        """The pieces of `data`, and past the cap the statement that deletes the oldest."""
        at = range(start, start + len(data), PIECE)
        pieces: list[Write] = [(PUT, (task_id, self.me, i, data[i - start : i - start + PIECE], task_id)) for i in at]
        if pieces and stored + len(data) > CAP:
            pieces.append((TRIM, (task_id, self.me, task_id, CAP)))
        return pieces


class Part(NamedTuple):
    """A stretch of one machine's log file of a task: a run's output, with the header before it."""

    head: str
    start: int
    end: int | None  # None: to the end of what there is (the last part, which may still grow)
    expect: int = 0  # where its run's output ended, as the queue knows: what a reader waits for


class Gap(NamedTuple):
    """Bytes of the log the database does not hold: cut by the cap, or not copied."""

    size: int
    heads: tuple[str, ...]

    def more(self, size: int, head: str) -> Gap:
        return Gap(self.size + size, self.heads if head in self.heads else (*self.heads, head))

    def said(self, task: Task) -> str:
        machines = " and ".join(self.heads)
        return (
            f"{self.size:,} bytes of {task.name}'s log from {machines} left out: the database keeps the newest"
            f" {CAP >> 10} KiB of a task's log; {machines}'s {task.log_file} has all of it"
        )


class Log:
    """A task's log on a shared queue: its runs' parts in order, each read from this machine's file
    when this machine ran it, else from what the database keeps of the machine's that did."""

    def __init__(self, conn: Any, cfg: Config, task: Task, parts: list[Part] | None = None) -> None:
        self.conn, self.task, self.here = conn, task, cfg.features["postgres"].head
        self.path = api.log_path(cfg, task)
        self.parts = runs_parts(conn, task.id) if parts is None else parts
        self.lengths = [(p.end if p.end is not None else max(self._there(p), p.start)) - p.start for p in self.parts]
        self.size = sum(self.lengths)

    @property
    def waiting(self) -> int:
        """What the last run wrote that has not reached the database yet."""
        return max(self.parts[-1].expect - self._there(self.parts[-1]), 0) if self.parts else 0

    def read(self, offset: int, limit: int = 1 << 62) -> Iterator[bytes | Gap]:
        """The log from `offset` (counted over the parts, in order), up to `limit` bytes: its data, and
        a Gap for what is missing before data that is there; it stops where nothing more is there yet."""
        at, missing = 0, Gap(0, ())
        for part, length in zip(self.parts, self.lengths, strict=True):
            pos, end, at = part.start + max(offset - at, 0), part.start + length, at + length
            for where, data in self._data(part, pos, end, limit) if pos < end else ():
                if where > pos:
                    missing = missing.more(where - pos, part.head)
                if missing.size:
                    yield missing
                    missing = Gap(0, ())
                yield data
                pos, limit = where + len(data), limit - len(data)
                if limit <= 0:
                    return
            if pos < end:  # said only once data follows it: its head may be copying it now
                missing = missing.more(end - pos, part.head)
        if missing.size and self.parts[-1].end is not None:  # a run's part alone: nothing follows it
            yield missing

    def _there(self, part: Part) -> int:
        """Where what there is of the part's file ends."""
        if part.head == self.here:
            try:
                return self.path.stat().st_size
            except OSError:
                return 0
        last = self.conn.execute(
            "SELECT start + octet_length(data) FROM task_logs WHERE task_id = ? AND head = ? ORDER BY start DESC LIMIT 1",
            (self.task.id, part.head),
        ).fetchone()
        return int(last[0]) if last else 0

    def _data(self, part: Part, pos: int, end: int, limit: int) -> Iterator[tuple[int, bytes]]:
        """The data there is of the part's file from `pos` to `end`, each with where it starts."""
        if part.head == self.here:
            yield from self._file(pos, end, limit)
            return
        while pos < end and limit > 0:  # a piece holding `pos` starts less than PIECE before it
            rows = self.conn.execute(
                "SELECT start, data FROM task_logs WHERE task_id = ? AND head = ? AND start > ? AND start < ?"
                " ORDER BY start LIMIT 16",
                (self.task.id, part.head, pos - PIECE, end),
            ).fetchall()
            rows = [(start, data) for start, data in rows if start + len(data) > pos]
            if not rows:
                return
            for start, data in rows:
                where = max(start, pos)
                chunk = bytes(data[where - start : where - start + min(end - where, limit)])
                yield where, chunk
                pos, limit = where + len(chunk), limit - len(chunk)
                if pos >= end or limit <= 0:
                    return

    def _file(self, pos: int, end: int, limit: int) -> Iterator[tuple[int, bytes]]:
        try:
            with self.path.open("rb") as log:
                log.seek(pos)
                while pos < end and limit > 0 and (data := log.read(min(end - pos, limit, BLOCK))):
                    yield pos, data
                    pos, limit = pos + len(data), limit - len(data)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise OrchestrateError(f"cannot read {self.path}: {exc.strerror}") from None


def runs_parts(conn: Any, task_id: int) -> list[Part]:
    """The task's log, run by run: each run's part goes from the end of the one before it on the
    same machine; the attempt in progress, or else the last run, reaches to the end of its file."""
    rows = conn.execute(
        "SELECT head, log_end FROM runs WHERE task_id = ? AND head IS NOT NULL AND log_end IS NOT NULL ORDER BY n",
        (task_id,),
    ).fetchall()
    running = conn.execute("SELECT head FROM tasks WHERE id = ? AND status = 'running'", (task_id,)).fetchone()
    ends: dict[str, int] = {}
    found = []
    for head, end in rows:
        found.append(Part(head, ends.get(head, 0), end, end))
        ends[head] = end
    if running and running[0]:
        found.append(Part(running[0], ends.get(running[0], 0), None))
    elif found:
        found[-1] = found[-1]._replace(end=None)
    return found


def run_part(conn: Any, task: Task, n: int) -> Part | None:
    """Run `n`'s output (without its header) as a part, if it ran on a machine on record."""
    row = conn.execute("SELECT head, log_start, log_end FROM runs WHERE task_id = ? AND n = ?", (task.id, n)).fetchone()
    if row is None or row[0] is None or row[1] is None or row[2] is None:
        return None
    return Part(row[0], row[1], row[2], row[2])
