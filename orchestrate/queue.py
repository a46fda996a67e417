"""The head's side of the queue: claim, record, requeue and heartbeat, one transaction per call."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any, TypeVar

from orchestrate import store
from orchestrate.errors import QueueBusy

T = TypeVar("T")
LEASE_S = 30.0  # a running task's lease; the head renews it with every heartbeat
AGING_S = 30 * 60  # a low task waiting this long is claimed as a normal one
LOOP_BUSY_MS = 20  # how long a statement on the event loop may wait for another writer
LOG_DIR = ".orchestrate/logs"  # relative to the project, where the head writes agents' output
PUT_SLOT = """INSERT OR REPLACE INTO agents (state, note, task_id, pid, rss_mb, since, tasks_done, cost_usd, id, type)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""  # the order of Distributor.rows()


class Queue:
    """The queue as the head uses it: one connection, and each call one transaction.

    Statements run on the event loop itself: they take microseconds, while a hop to a worker
    thread costs a millisecond when the machine is busy starting agents. Only when another
    process holds the write lock does a call wait for it in a thread, so the loop stays free.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.lock = asyncio.Lock()  # one transaction at a time, even while one waits in a thread

    @classmethod
    async def open(cls, path: Path) -> Queue:
        conn = store.connect(path)
        conn.execute(f"PRAGMA busy_timeout = {LOOP_BUSY_MS}")
        # Durable across a crash of any process; a power cut may undo the last commits (README).
        conn.execute("PRAGMA synchronous = NORMAL")
        return cls(conn)

    async def close(self) -> None:
        self.conn.close()

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        async with self.lock:
            try:
                return work(self.conn)
            except sqlite3.OperationalError as exc:
                if not store.is_busy(exc):
                    raise
            return await asyncio.to_thread(self._wait_and_run, work)

    def _wait_and_run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        self.conn.execute(f"PRAGMA busy_timeout = {store.BUSY_TIMEOUT_S * 1000:.0f}")
        try:
            return work(self.conn)
        except sqlite3.OperationalError as exc:
            if store.is_busy(exc):
                raise QueueBusy(f"the queue stayed locked for over {store.BUSY_TIMEOUT_S:g} s") from None
            raise
        finally:
            self.conn.execute(f"PRAGMA busy_timeout = {LOOP_BUSY_MS}")

    async def _write(self, *statements: tuple[str, Iterable[Any]]) -> list[Any]:
        """Run statements in one BEGIN IMMEDIATE transaction; the rows of the last one."""

        def write(conn: sqlite3.Connection) -> list[Any]:
            rows: list[Any] = []
            with store.transaction(conn):
                for sql, args in statements:
                    rows = conn.execute(sql, tuple(args)).fetchall()
            return rows

        return await self._run(write)

    async def _read(self, sql: str, *args: Any) -> list[Any]:
        return await self._run(lambda conn: conn.execute(sql, args).fetchall())

    async def register(self, pid: int, log_file: str, slots: Iterable[tuple[Any, ...]], now: float) -> int:
        """Take over the queue: tasks a dead head left running go back to pending, unspent."""
        rows = await self._write(
            ("DELETE FROM head", ()),
            ("INSERT INTO head VALUES (1, ?, ?, ?, ?, ?)", (pid, os.uname().nodename, now, now, log_file)),
            ("DELETE FROM agents", ()),
            *((PUT_SLOT, s) for s in slots),
            (
                """UPDATE tasks SET status = 'pending', agent = NULL, pid = NULL, lease_until = NULL,
                   started_at = NULL WHERE status = 'running' RETURNING id""",
                (),
            ),
        )
        return len(rows)

    async def unregister(self) -> None:
        await self._write(("DELETE FROM head", ()), ("DELETE FROM agents", ()))

    async def heartbeat(
        self, now: float, running: Iterable[tuple[int, int | None]], slots: Iterable[tuple[Any, ...]]
    ) -> None:
        """Prove the head lives, renew the running tasks' leases (with their agents' pids), publish the slots."""
        lease = "UPDATE tasks SET lease_until = ?, pid = ? WHERE id = ? AND status = 'running'"
        await self._write(
            ("UPDATE head SET heartbeat_at = ?", (now,)),
            *((lease, (now + LEASE_S, pid, task_id)) for task_id, pid in running),
            ("UPDATE tasks SET rank = 1 WHERE status = 'pending' AND rank = 2 AND created_at <= ?", (now - AGING_S,)),
            *((PUT_SLOT, s) for s in slots),
        )

    async def claim(
        self, slot: str, takes: Collection[str], known: Collection[str], now: float, log_dir: str = LOG_DIR
    ) -> store.Task | None:
        """Atomically give `slot` the next task it may run: priority, then age; deps done; no backoff.

        `takes` are the slot's agent name and type; a task preferring an agent in `known` waits
        for it, one preferring an agent not configured goes to anyone.
        """
        rows = await self._write(
            (
                f"""UPDATE tasks SET status = 'running', started_at = ?, finished_at = NULL, lease_until = ?,
                    agent = ?, log_file = ? || '/' || printf('task_%03d.log', id)  -- as store.task_name
                WHERE id = (
                    SELECT t.id FROM tasks t
                    WHERE t.status = 'pending' AND t.not_before <= ?
                      AND (t.agent_type IS NULL OR t.agent_type IN ({",".join("?" * len(takes))})
                           OR t.agent_type NOT IN ({",".join("?" * len(known))}))
                      AND NOT EXISTS (SELECT 1 FROM deps d JOIN tasks p ON p.id = d.depends_on
                                      WHERE d.task_id = t.id AND p.status <> 'completed')
                    ORDER BY t.rank, t.id LIMIT 1)
                RETURNING {store.task_columns("tasks")}""",
                (now, now + LEASE_S, slot, log_dir, now, *takes, *known),
            )
        )
        return store.task_from_row(rows[0]) if rows else None

    async def update(self, task_id: int, **fields: Any) -> bool:
        """Change a running task; False if it is no longer running (cancelled meanwhile)."""
        sets = ", ".join(f"{k} = ?" for k in fields)
        sql = f"UPDATE tasks SET {sets} WHERE id = ? AND status = 'running' RETURNING id"
        return bool(await self._write((sql, (*fields.values(), task_id))))

    async def statuses(self, ids: Collection[int]) -> dict[int, str]:
        rows = await self._read(f"SELECT id, status FROM tasks WHERE id IN ({','.join('?' * len(ids))})", *ids)
        return {r[0]: r[1] for r in rows}

    async def data_version(self) -> int:
        """Changes whenever another connection commits: how the head notices `add` and `cancel`."""
        return int((await self._read("PRAGMA data_version"))[0][0])

    async def pending(self) -> int:
        return int((await self._read("SELECT n FROM task_counts WHERE status = 'pending'"))[0][0])

    async def runnable(self) -> int:
        """Pending tasks that can still run: none of their dependencies, however indirect, failed."""
        rows = await self._read(
            """WITH RECURSIVE stuck(id) AS (
                   SELECT d.task_id FROM deps d JOIN tasks p ON p.id = d.depends_on
                   WHERE p.status IN ('failed', 'cancelled')
                   UNION SELECT d.task_id FROM deps d JOIN stuck s ON d.depends_on = s.id)
               SELECT count(*) FROM tasks WHERE status = 'pending' AND id NOT IN stuck"""
        )
        return int(rows[0][0])

    async def finished(self) -> list[store.Task]:
        """Completed and failed tasks, in the order they finished."""
        rows = await self._read(
            f"{store.SELECT_TASKS} WHERE t.status IN ('completed', 'failed') ORDER BY t.finished_at, t.id"
        )
        return [store.task_from_row(r) for r in rows]

    async def recent(self, limit: int) -> tuple[list[Any], dict[str, int]]:
        """The latest tasks as current_state.md lists them, and the count of tasks in each state."""
        rows = await self._read(
            """SELECT id, description, status, agent, output_file,
                   substr(coalesce(nullif(trim(result), ''), error), 1, 300)
               FROM tasks ORDER BY id DESC LIMIT ?""",
            limit,
        )
        counts = dict(await self._read("SELECT status, n FROM task_counts"))
        return rows, {s: counts.get(s, 0) for s in store.STATES}
