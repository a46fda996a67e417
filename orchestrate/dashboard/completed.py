"""The completed tasks as the dashboard charts them (their finish times, and the histogram of their
run times), read whole once and then only as more complete, so that a poll never reads them all."""

from __future__ import annotations

import bisect
import sqlite3
import threading
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from orchestrate.core.config import Config
from orchestrate.core.states import Status

DURATION_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
# A completion is read again while its finish time is this close to the latest: one written with
# an earlier time may commit after a later one (a head held up by the busy timeout, or another head).
LAG_S = 30.0
# One statement, so one snapshot on either engine: the count and the rows agree.
READ = f"""SELECT t.id, t.finished_at, t.started_at, c.n FROM task_counts c
    LEFT JOIN tasks t ON t.status = '{Status.COMPLETED}' AND {{where}}
    WHERE c.status = '{Status.COMPLETED}' ORDER BY t.finished_at"""
READ_ALL = READ.format(where="t.finished_at IS NOT NULL")
READ_SINCE = READ.format(where="t.finished_at >= ?")


class Completed:
    """What the dashboard has read of one queue's completed tasks.

    Completed is a final state, so the completed tasks change only by more of them completing;
    when their count says otherwise (a task deleted, or one missed), they are read whole again."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # the server answers each connection in a thread of its own
        self._forget()
        self.count = -1  # none read yet

    def _forget(self) -> None:
        self.count = 0  # the completed tasks accounted for, with a finish time or without
        self.finished = array("d")  # their finish times, in order
        self.recent: dict[int, float] = {}  # the finish times within LAG_S of the latest, by task id
        self.within = [0] * len(DURATION_BUCKETS)  # how many ran at most each bucket's seconds
        self.timed = 0  # how many have a start and a finish time
        self.seconds = 0.0  # what they ran in all

    def update(self, conn: sqlite3.Connection) -> None:
        """Take in what completed since the last update."""
        rows = conn.execute(READ_SINCE, (self.latest - LAG_S,)).fetchall() if self.count >= 0 else []
        new = [r for r in rows if r[0] is not None and r[0] not in self.recent]
        if not rows or self.count + len(new) != rows[0][3]:
            self._forget()
            rows = conn.execute(READ_ALL).fetchall()
            new = [r for r in rows if r[0] is not None]
        self._add(new)
        self.count = rows[0][3] if rows else 0
        self.recent = {t: at for t, at in self.recent.items() if at >= self.latest - LAG_S}

    @property
    def latest(self) -> float:
        return self.finished[-1] if self.finished else 0.0

    def _add(self, rows: list[Any]) -> None:
        """Take in `rows` of READ, in the order of their finish times."""
        if rows and rows[0][1] >= self.latest:
            self.finished.extend(r[1] for r in rows)
        else:  # one that finished before the latest committed after it
            for r in rows:
                self.finished.insert(bisect.bisect_right(self.finished, r[1]), r[1])
        self.recent.update((r[0], r[1]) for r in rows)
        took = sorted(r[1] - r[2] for r in rows if r[2] is not None)
        self.within = [
            n + bisect.bisect_right(took, limit) for n, limit in zip(self.within, DURATION_BUCKETS, strict=True)
        ]
        self.timed += len(took)
        self.seconds += sum(took)

    def between(self, start: float, end: float) -> int:
        """How many finished at `start` or later and before `end`."""
        return bisect.bisect_left(self.finished, end) - bisect.bisect_left(self.finished, start)


QUEUES: dict[tuple[str | None, str], Completed] = {}
QUEUES_LOCK = threading.Lock()


@contextmanager
def read(conn: sqlite3.Connection, cfg: Config) -> Iterator[Completed]:
    """The completed tasks of `cfg`'s queue, brought up to date through `conn` and held still while in use."""
    pg = cfg.features.get("postgres")
    key = (getattr(pg, "url", None), str(cfg.task_queue.database))
    with QUEUES_LOCK:
        found = QUEUES.setdefault(key, Completed())
    with found.lock:
        found.update(conn)
        yield found
