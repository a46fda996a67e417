"""The head's side of the queue: claim, record, requeue and heartbeat, on aiosqlite."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Collection, Iterable
from pathlib import Path
from typing import Any

import aiosqlite

from orchestrate import store

LEASE_S = 30.0  # a running task's lease; the head renews it with every heartbeat
AGING_S = 30 * 60  # a low task waiting this long is claimed as a normal one
PUT_SLOT = """INSERT OR REPLACE INTO agents (state, note, task_id, pid, rss_mb, since, tasks_done, cost_usd, id, type)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""  # the order of Distributor.rows()


class Queue:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn
        self.writing = asyncio.Lock()  # one transaction at a time on the shared connection

    @classmethod
    async def open(cls, path: Path) -> Queue:
        with store.opened(path):  # create and migrate with the same code as the CLI
            pass
        conn = await aiosqlite.connect(path, timeout=store.BUSY_TIMEOUT_S, isolation_level=None)
        conn.row_factory = aiosqlite.Row
        await conn.execute("PRAGMA foreign_keys=ON")
        return cls(conn)

    async def close(self) -> None:
        await self.conn.close()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        """BEGIN IMMEDIATE on the shared connection, one transaction at a time."""
        async with self.writing:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                await self.conn.execute("ROLLBACK")
                raise
            await self.conn.execute("COMMIT")

    async def _write(self, *statements: tuple[str, Iterable[Any]]) -> list[Any]:
        """Run statements in one transaction; the rows of the last one."""
        rows: list[Any] = []
        async with self._transaction():
            for sql, args in statements:
                rows = list(await self.conn.execute_fetchall(sql, tuple(args)))
        return rows

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

    async def heartbeat(self, now: float, running: Collection[int], slots: Iterable[tuple[Any, ...]]) -> None:
        """Prove the head lives, renew the running tasks' leases, publish the slots' state."""
        marks = ",".join("?" * len(running))
        await self._write(
            ("UPDATE head SET heartbeat_at = ?", (now,)),
            (f"UPDATE tasks SET lease_until = ? WHERE id IN ({marks})", (now + LEASE_S, *running)),
            (
                "UPDATE tasks SET rank = 1 WHERE status = 'pending' AND rank = 2 AND created_at <= ?",
                (now - AGING_S,),
            ),
            *((PUT_SLOT, s) for s in slots),
        )

    async def claim(
        self,
        takers: Collection[str],
        known: Collection[str],
        now: float,
        assign: Callable[[store.Task], tuple[str, str]],
    ) -> store.Task | None:
        """Atomically take the next task a free slot may run: priority, then age; deps done; no backoff.

        `takers` are the names and types of agents with a free slot; a task preferring an agent
        in `known` waits for it, one preferring an agent not configured goes to anyone.
        `assign` names the slot and the log file, inside the same transaction.
        """
        async with self._transaction():
            rows = await self.conn.execute_fetchall(
                f"""UPDATE tasks SET status = 'running', started_at = ?, finished_at = NULL, lease_until = ?
                WHERE id = (
                    SELECT t.id FROM tasks t
                    WHERE t.status = 'pending' AND t.not_before <= ?
                      AND (t.agent_type IS NULL OR t.agent_type IN ({",".join("?" * len(takers))})
                           OR t.agent_type NOT IN ({",".join("?" * len(known))}))
                      AND NOT EXISTS (SELECT 1 FROM deps d JOIN tasks p ON p.id = d.depends_on
                                      WHERE d.task_id = t.id AND p.status <> 'completed')
                    ORDER BY t.rank, t.id LIMIT 1)
                RETURNING id""",
                (now, now + LEASE_S, now, *takers, *known),
            )
            task = await self.task(next(iter(rows))[0]) if rows else None
            if task:
                slot, log_file = assign(task)
                await self.conn.execute(
                    "UPDATE tasks SET agent = ?, log_file = ? WHERE id = ?", (slot, log_file, task.id)
                )
        return task

    async def task(self, task_id: int) -> store.Task:
        rows = await self.conn.execute_fetchall(store.SELECT_TASKS + " WHERE t.id = ?", (task_id,))
        return store.task_from_row(next(iter(rows)))

    async def update(self, task_id: int, **fields: Any) -> bool:
        """Change a running task; False if it is no longer running (cancelled meanwhile)."""
        sets = ", ".join(f"{k} = ?" for k in fields)
        sql = f"UPDATE tasks SET {sets} WHERE id = ? AND status = 'running' RETURNING id"
        return bool(await self._write((sql, (*fields.values(), task_id))))

    async def statuses(self, ids: Collection[int]) -> dict[int, str]:
        rows = await self.conn.execute_fetchall(
            f"SELECT id, status FROM tasks WHERE id IN ({','.join('?' * len(ids))})", tuple(ids)
        )
        return {r[0]: r[1] for r in rows}

    async def data_version(self) -> int:
        """Changes whenever another connection commits: how the head notices `add` and `cancel`."""
        rows = await self.conn.execute_fetchall("PRAGMA data_version")
        return int(next(iter(rows))[0])

    async def pending(self) -> int:
        rows = await self.conn.execute_fetchall("SELECT n FROM task_counts WHERE status = 'pending'")
        return int(next(iter(rows))[0])

    async def runnable(self) -> int:
        """Pending tasks that can still run: none of their dependencies, however indirect, failed."""
        rows = await self.conn.execute_fetchall(
            """WITH RECURSIVE stuck(id) AS (
                   SELECT d.task_id FROM deps d JOIN tasks p ON p.id = d.depends_on
                   WHERE p.status IN ('failed', 'cancelled')
                   UNION SELECT d.task_id FROM deps d JOIN stuck s ON d.depends_on = s.id)
               SELECT count(*) FROM tasks WHERE status = 'pending' AND id NOT IN stuck"""
        )
        return int(next(iter(rows))[0])
