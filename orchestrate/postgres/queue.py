"""The head's side of a PostgreSQL queue that several heads share.

A claim locks its row (FOR UPDATE SKIP LOCKED), so heads never wait on each other's picks, and
leases it to this head by the database's clock; the heartbeat renews this head's leases and takes
back any other head's that ran out, without spending an attempt (failing a task whose leases ran
out more than max_interruptions times). Every write after a claim names its claim, so a head
whose lease ran out records nothing when it wakes. Notices on the `orchestrate` channel tell a
head of another's commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg

from orchestrate.core.errors import OrchestrateError, QueueBusy
from orchestrate.core.queue import Queue, Write
from orchestrate.core.states import Status, Stop
from orchestrate.core.store import Task
from orchestrate.postgres import Connection, Settings, schema, shown

if TYPE_CHECKING:
    from orchestrate.core.head import Head

T = TypeVar("T")
log = logging.getLogger(__name__)
RECONNECT_S = 1.0  # how long a call waits, once the database does not answer, before saying so
EPOCH_NOW = "extract(epoch FROM now())"  # the database's clock, which every head's leases share
RENEW = f"""UPDATE tasks SET lease_until = {EPOCH_NOW} + current_setting('orchestrate.lease')::float8
    WHERE status = '{Status.RUNNING}' AND head = current_setting('orchestrate.head')"""
# A running task whose lease ran out goes back to pending, unspent; past max_interruptions, it fails.
TAKE_BACK = f"""UPDATE tasks SET
        status = CASE WHEN interruptions >= ? THEN '{Status.FAILED}' ELSE '{Status.PENDING}' END,
        error = CASE WHEN interruptions >= ? THEN
            'its head stopped answering while it ran, ' || (interruptions + 1) || ' times (task_queue.max_interruptions)'
            ELSE error END,
        finished_at = CASE WHEN interruptions >= ? THEN {EPOCH_NOW} END,
        interruptions = interruptions + 1, agent = NULL, pid = NULL, started_at = NULL, head = NULL, lease_until = NULL
    WHERE id IN (SELECT id FROM tasks WHERE status = '{Status.RUNNING}' AND lease_until < {EPOCH_NOW}
                 FOR UPDATE SKIP LOCKED)
    RETURNING id, status, head"""


class PostgresQueue(Queue):
    claim_sets = f""", head = current_setting('orchestrate.head'),
        lease_until = {EPOCH_NOW} + current_setting('orchestrate.lease')::float8"""
    lock_rows = " FOR UPDATE OF t SKIP LOCKED"

    def __init__(self, settings: Settings, head: Head, lock_file: Path) -> None:
        self.settings, self.head, self.lock_file = settings, head, lock_file
        self.logs = ".orchestrate/logs"
        self.lock = asyncio.Lock()
        self.version = 0  # notices from other connections
        self.renewed = time.monotonic()  # when this head's leases were last renewed
        self.team: set[str] = set()  # what tasks may wait for: every live head's agents
        self.link = self._connect()

    def _connect(self) -> Any:
        conn = Connection(self.settings, str(self.lock_file))
        conn.execute("SELECT set_config('orchestrate.lease', ?, false)", (str(self.settings.lease_seconds),))
        conn.pg.add_notify_handler(self._noticed)
        conn.pg.execute(f"LISTEN {schema.CHANNEL}")
        return conn

    def _noticed(self, notice: Any) -> None:
        if notice.pid != self.link.pg.info.backend_pid:
            self.version += 1

    async def close(self) -> None:
        self.link.close()

    async def _run(self, work: Callable[[Any], T]) -> T:
        async with self.lock:
            try:
                if self.link.pg.closed:
                    self.link = self._connect()
                return work(self.link)
            except sqlite3.OperationalError as exc:
                if not self.link.pg.closed and not self.link.pg.broken:
                    raise
                lost = exc
        await asyncio.sleep(RECONNECT_S)  # as SQLite's busy wait: a caller that tries again does not spin
        raise QueueBusy(f"{shown(self.settings.url)} does not answer ({lost})")

    async def write(self, *statements: Write) -> list[Any]:
        """One transaction: a plain BEGIN, since the rows a claim or a record touches are locked
        by the statements themselves (the commands' BEGIN IMMEDIATE takes the advisory lock).
        Sent as one pipeline: the whole transaction costs one round trip, not one a statement."""

        def write(conn: Any) -> list[Any]:
            try:
                with conn.pipeline():
                    conn.execute("BEGIN")
                    cursors = [conn.execute(sql, tuple(args)) for sql, args in statements]
                    conn.execute("COMMIT")
                rows: list[Any] = cursors[-1].fetchall() if cursors else []
                return rows
            except BaseException:
                if not conn.pg.closed and not conn.pg.broken:
                    with contextlib.suppress(psycopg.Error):  # the error that brought us here is the one to tell
                        conn.pg.execute("ROLLBACK")
                raise

        return await self._run(write)

    async def read(self, sql: str, *args: Any) -> list[Any]:
        """Wait for the database to answer again, while this head's leases hold: an extension reads
        in the middle of an attempt, which a read that failed would fail."""
        while True:
            try:
                return await super().read(sql, *args)
            except QueueBusy:
                if self.lapsing():
                    raise

    async def register(self, pid: int, log_file: str, now: float) -> int:
        """Take this head's row; its tasks left running by a head of its name that died go back
        to pending, unspent, and so do any head's whose leases ran out."""
        me, host = self.settings.head, os.uname().nodename
        rows = await self.read(
            f"SELECT pid, host, {EPOCH_NOW} - extract(epoch FROM beat_at) FROM heads WHERE name = ?", me
        )
        if rows and rows[0][2] < self.settings.lease_seconds and not _gone(rows[0][0], rows[0][1], host):
            raise OrchestrateError(
                f"a head named {me} (pid {rows[0][0]} on {rows[0][1]}) already works {shown(self.settings.url)};"
                " give this one a task_queue.head_name of its own"
            )
        upsert = """INSERT INTO heads (name, pid, host, started_at, heartbeat_at, log_file) VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (name) DO UPDATE SET pid = excluded.pid, host = excluded.host, started_at = excluded.started_at,
                heartbeat_at = excluded.heartbeat_at, log_file = excluded.log_file, beat_at = now()"""
        recover = f"""UPDATE tasks SET status = '{Status.PENDING}', agent = NULL, pid = NULL, started_at = NULL,
            head = NULL, lease_until = NULL WHERE status = '{Status.RUNNING}' AND head = ? RETURNING id"""
        names = sorted({s.agent.name for s in self.head.distributor.slots})  # the caps of this head's agents in force
        totals: list[Write] = [("DELETE FROM agent_totals WHERE agent = ?", (n,)) for n in names]
        totals += [
            ("INSERT INTO agent_totals VALUES (?, ?)", kv) for kv in self.settings.max_total.items() if kv[0] in names
        ]
        own = await self.write(*totals, (upsert, (me, pid, host, now, now, log_file)), (recover, (me,)))
        await self._publish(now)
        log.info("head %s on %s, leases of %g s", me, shown(self.settings.url), self.settings.lease_seconds)
        return len(own) + len(await self._take_back())

    async def claim(
        self, slot: str, takes: Collection[str], known: Collection[str], now: float, busy: Collection[int] = ()
    ) -> Task | None:
        """As on one machine, but a task preferring an agent that another live head has waits for it."""
        return await super().claim(slot, takes, {*known, *self.team}, now, busy)

    async def _publish(self, now: float) -> None:
        """Beat, say which agents this head's tasks may wait for, and learn the other live heads'."""
        known = ",".join(sorted(self.head.distributor.known()))
        beat = "UPDATE heads SET heartbeat_at = ?, beat_at = now(), agents = ? WHERE name = ?"
        await self.write((beat, (now, known, self.settings.head)), (RENEW, ()))
        self.renewed = time.monotonic()
        rows = await self.read(
            f"SELECT agents FROM heads WHERE extract(epoch FROM beat_at) > {EPOCH_NOW} - ?", self.settings.lease_seconds
        )
        self.team = {name for (agents,) in rows for name in agents.split(",") if name}

    async def heartbeat(self, now: float) -> None:
        """Renew this head's leases, and take back those that ran out on other heads; once the
        database has not answered for half a lease, stop this head's agents before another head
        can take their tasks (each goes back to pending, if still this head's, when it answers)."""
        try:
            await self._publish(now)
        except QueueBusy:
            for slot in self.head.busy.values() if self.lapsing() else ():
                slot.interrupt(Stop.STOPPED)
            raise
        await self._take_back()

    async def _take_back(self) -> list[Any]:
        limit = self.settings.max_interruptions
        rows = await self.write((TAKE_BACK, (limit, limit, limit)))
        for task_id, status, _ in rows:
            log.warning(
                "task_%03d: its head's lease ran out; %s", task_id, "failed" if status == "failed" else "pending again"
            )
        return rows

    def lapsing(self) -> bool:
        """Whether this head's leases could run out before the database answers again."""
        return time.monotonic() - self.renewed > self.settings.lease_seconds / 2

    async def data_version(self) -> int:
        """Counts other connections' notices: reading them costs a non-blocking receive."""
        pg = self.link.pg
        try:
            pg.pgconn.consume_input()
            while (notice := pg.pgconn.notifies()) is not None:
                self.version += notice.be_pid != pg.info.backend_pid
        except psycopg.Error:
            pass  # the connection is gone: the next statement says so
        return self.version


def _gone(pid: int, host: str, here: str) -> bool:
    """A head of this name on this machine whose process has exited."""
    from orchestrate.api import alive

    return host == here and not alive(pid)
