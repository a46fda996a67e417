"""The head's side of the queue: claim, record and heartbeat, one transaction per call.

Every write for a run after its claim names the claim: a run whose row has moved on (cancelled,
retried and claimed again, recovered) changes nothing."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any, TypeVar

from orchestrate.core import store
from orchestrate.core.errors import QueueBusy
from orchestrate.core.states import TRANSITIONS, Event, Status, sql_list

T = TypeVar("T")
Write = tuple[str, Iterable[Any]]  # a statement and its arguments
LOOP_BUSY_MS = 20  # how long a statement on the event loop may wait for another writer
BUSY_RETRY_S = 0.05  # then how long it gives the loop back before trying again


class Queue:
    """The queue as the head uses it: one connection, and each call one transaction.

    Statements run on the event loop itself: they take microseconds, while a hop to a worker
    thread costs a millisecond when the machine is busy starting agents. When another process
    holds the write lock, a call gives the loop back and tries again, for up to the busy timeout.
    """

    claim_sets = lock_rows = ""  # what a shared queue adds to a claim: its lease, and its row lock

    def __init__(self, path: Path) -> None:
        self.conn = store.connect(path)
        self.logs = ".orchestrate/logs"  # where claims say a task logs, from the project
        self.conn.execute(f"PRAGMA busy_timeout = {LOOP_BUSY_MS}")
        # Durable across a crash of any process; a power cut may undo the last commits (README).
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self.lock = asyncio.Lock()  # one transaction at a time

    async def close(self) -> None:
        self.conn.close()

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        deadline = time.monotonic() + store.BUSY_TIMEOUT_S
        async with self.lock:
            while True:
                try:
                    return work(self.conn)
                except sqlite3.OperationalError as exc:
                    if not store.is_busy(exc):
                        raise
                    if time.monotonic() > deadline:
                        raise QueueBusy(f"the queue stayed locked for over {store.BUSY_TIMEOUT_S:g} s") from None
                await asyncio.sleep(BUSY_RETRY_S)  # another process holds the write lock: the loop stays free

    async def write(self, *statements: Write) -> list[Any]:
        """Run one or more statements in one BEGIN IMMEDIATE transaction; the rows of the last one."""

        def write(conn: sqlite3.Connection) -> list[Any]:
            with store.transaction(conn):
                return [conn.execute(sql, tuple(args)).fetchall() for sql, args in statements][-1]

        return await self._run(write)

    async def read(self, sql: str, *args: Any) -> list[Any]:
        """The rows of one statement: for extensions, which keep their queries to themselves."""
        return await self._run(lambda conn: conn.execute(sql, args).fetchall())

    async def register(self, pid: int, log_file: str, now: float) -> int:
        """Take over the queue: tasks a dead head left running go back to pending, unspent."""
        recover = f"""UPDATE tasks SET status = '{Status.PENDING}', agent = NULL, pid = NULL, started_at = NULL
            WHERE status IN {sql_list(TRANSITIONS[Event.REQUEUE][0])} RETURNING id"""
        me = ("INSERT INTO head VALUES (1, ?, ?, ?, ?, ?)", (pid, os.uname().nodename, now, now, log_file))
        return len(await self.write(("DELETE FROM head", ()), me, (recover, ())))

    async def heartbeat(self, now: float) -> None:
        """Prove the head lives."""
        await self.write(("UPDATE head SET heartbeat_at = ?", (now,)))

    async def claim(
        self, slot: str, takes: Collection[str], known: Collection[str], now: float, busy: Collection[int] = ()
    ) -> store.Task | None:
        """Atomically give `slot` the next task it may run: priority, then age; deps done; no backoff;
        nothing while the queue is paused.

        `takes` are the slot's agent name and type; a task preferring an agent in `known` waits
        for it, one preferring an agent not configured goes to anyone. Tasks in `busy` still have
        an agent of this head's winding down (cancelled, then retried): never two at once.
        """
        # The first ready task of each kind this slot may take (untyped, its own, or preferring an
        # agent no slot has): each an index seek, as is each step of `kinds` through the kinds ready.
        # Named: without statistics (ANALYZE) SQLite's planner would walk tasks_by_status_id instead.
        ready = f"FROM tasks t INDEXED BY tasks_ready WHERE {store.READY} AND id NOT IN ({_marks(busy)})"
        kind = store.KIND
        sql = f"""UPDATE tasks SET status = ?, started_at = ?, finished_at = NULL, claim = claim + 1,
                agent = ?, log_file = ? || '/' || printf('task_%03d.log', id){self.claim_sets}  -- as store.task_name
            WHERE id = (
                WITH RECURSIVE kinds(a) AS (
                    SELECT '' UNION ALL SELECT (SELECT {kind} {ready} AND {kind} > a ORDER BY {kind} LIMIT 1)
                    FROM kinds WHERE a IS NOT NULL)
                SELECT t.id FROM tasks t WHERE t.id IN (
                    SELECT (SELECT id {ready} AND {kind} = a ORDER BY rank, id LIMIT 1{self.lock_rows}) FROM kinds
                    WHERE a IN ({_marks(takes)}) OR a NOT IN ({_marks(known)}))  -- '' (untyped) is no agent's
                  AND NOT EXISTS (SELECT 1 FROM paused)  -- orchestrate pause
                ORDER BY t.rank, t.id LIMIT 1{self.lock_rows})
            RETURNING {store.task_columns("tasks")}"""
        backoff = "status = 'pending' AND not_before > 0"  # tasks_in_backoff's rows: those run out are ready
        ready_again = f"UPDATE tasks INDEXED BY tasks_in_backoff SET not_before = 0 WHERE {backoff} AND not_before <= ?"
        args = (Status.RUNNING, now, slot, self.logs, *busy, *busy, *takes, *known)
        rows = await self.write((ready_again, (now,)), (sql, args))
        return store.task_from_row(rows[0]) if rows else None

    async def record(
        self, task_id: int, claim: int, event: Event | None, writes: Iterable[Write] = (), **fields: Any
    ) -> store.Task | None:
        """Move a run's task on by `event`, with `fields`, unless its row has moved on from the claim,
        in one transaction with `writes` (the extensions' record of the run): the task as recorded, or None."""
        statements = list(writes)
        if event is not None:
            sources, target = TRANSITIONS[event]
            sets = ", ".join(f"{k} = ?" for k in ("status", *fields))
            sql = f"UPDATE tasks SET {sets} WHERE id = ? AND claim = ? AND status IN {sql_list(sources)} RETURNING"
            statements.append((f"{sql} {store.task_columns('tasks')}", (target, *fields.values(), task_id, claim)))
        rows = await self.write(*statements) if statements else []
        return store.task_from_row(rows[0]) if rows and event is not None else None

    async def positions(self, claims: dict[int, int]) -> set[int]:
        """Of the runs in `claims` (task id: claim), those whose row is no longer running on that claim."""
        rows = await self.read(f"SELECT id, status, claim FROM tasks WHERE id IN ({_marks(claims)})", *claims)
        return set(claims) - {r[0] for r in rows if r[1] == Status.RUNNING and r[2] == claims[r[0]]}

    async def data_version(self) -> int:
        """Changes whenever another connection commits: how the head notices `add` and `cancel`."""
        return int((await self.read("PRAGMA data_version"))[0][0])


def _marks(items: Collection[Any]) -> str:
    return ",".join("?" * len(items))
