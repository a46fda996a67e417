"""SQLite's WAL checkpoints, off the head's event loop.

A checkpoint copies the pages the write-ahead log has gathered into the queue file and syncs both
to disk: milliseconds, more on a busy disk, which SQLite would otherwise spend inside whichever
commit crosses its thousand-page mark, on the loop, every few dozen tasks. The head's connection
stops checkpointing; once a beat a connection of this extension's own does it in a worker thread,
where the copy and the syncs release the GIL. The commands keep SQLite's own checkpoints. A
PASSIVE checkpoint waits for no one: what a reader still needs is copied by the next.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from orchestrate.core import store
from orchestrate.core.extension import Extension

if TYPE_CHECKING:
    from orchestrate.core.head import Head


class Checkpoints(Extension):
    async def started(self, head: Head) -> None:
        self.head, self.conn = head, sqlite3.connect(head.db, timeout=store.BUSY_TIMEOUT_S, check_same_thread=False)
        # Held by the thread while it checkpoints: a checkpoint runs on after the heartbeat that
        # awaited it is cancelled, and closing the connection under it crashes the interpreter.
        self.using = threading.Lock()
        head.queue.conn.execute("PRAGMA wal_autocheckpoint = 0")

    async def beat(self) -> None:
        try:
            await asyncio.to_thread(self._in_thread, self.conn.execute, "PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:  # the commits go on into the log: say so, and try at the next beat
            self.head.once(f"cannot checkpoint {self.head.db}'s write-ahead log ({exc}); trying every second")

    async def stopping(self) -> None:
        # once no checkpoint runs; the head's connection, closed last, checkpoints what is left
        await asyncio.to_thread(self._in_thread, self.conn.close)

    def _in_thread(self, call: Callable[..., object], *args: str) -> None:
        with self.using:
            call(*args)
