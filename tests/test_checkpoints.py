"""The head's WAL checkpoints run in a worker thread at each beat, not inside its commits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from orchestrate import api
from orchestrate.checkpoints import Checkpoints
from orchestrate.core.queue import Queue


async def test_the_heads_commits_leave_the_log_to_the_beat_which_copies_it_into_the_queue_file(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    queue = Queue(db)
    problems: list[str] = []
    head = SimpleNamespace(db=db, queue=queue, once=problems.append)
    checkpoints = Checkpoints()
    await checkpoints.started(head)  # type: ignore[arg-type]
    try:
        before = db.stat().st_size
        api.add_tasks(queue.conn, [api.NewTask(f"t{i}") for i in range(3000)], now=0)  # as the head's connection
        for i in range(200):  # thousands of pages in all: SQLite alone would have checkpointed several times
            await queue.write(("UPDATE tasks SET agent = ? WHERE id % 50 = ?", (f"a{i}", i % 50)))
        written = db.stat().st_size
        await checkpoints.beat()
        after = db.stat().st_size
    finally:
        await checkpoints.stopping()
        await queue.close()
    assert problems == []
    assert before == written < after  # the tasks reached the queue file only at the beat


# The head cancels its heartbeat, then stops its extensions: a checkpoint the cancelled beat handed
# to a worker thread may still be running when Checkpoints closes its connection. Closing it under
# the checkpoint crashed the head (SIGSEGV) in about one `orchestrate run` in thirty on a busy
# machine; here the same moment is reached every time, in a process of its own, so a crash is a
# return code rather than the end of the test run.
RACE = """
import asyncio, sqlite3, sys
from pathlib import Path
from types import SimpleNamespace
from orchestrate.checkpoints import Checkpoints

async def main(db):
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x)")
    for _ in range(300):
        extension = Checkpoints()
        await extension.started(SimpleNamespace(db=db, queue=SimpleNamespace(conn=conn), once=print))
        conn.executemany("INSERT INTO t VALUES (?)", [(b"x" * 2000,)] * 50)  # pages for the checkpoint to copy
        beat = asyncio.ensure_future(extension.beat())
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # the checkpoint is in its worker thread now
        beat.cancel()
        await extension.stopping()
    print(conn.execute("SELECT count(*) FROM t").fetchone()[0])

asyncio.run(main(Path(sys.argv[1])))
"""


def test_stopping_while_a_cancelled_beat_still_checkpoints_closes_cleanly(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", RACE, str(tmp_path / "q.db")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [str(300 * 50)]  # every insert was kept
