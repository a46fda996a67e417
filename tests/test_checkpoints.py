"""The head's WAL checkpoints run in a worker thread at each beat, not inside its commits."""

from __future__ import annotations

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
