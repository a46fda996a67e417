"""The queue on disk: schema, migrations, derived state and the head's liveness."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrate import api
from orchestrate.core import store
from orchestrate.core.errors import InvalidTransition, TaskNotFound, UsageError


def test_a_new_queue_is_migrated_in_wal_mode(project: Path) -> None:
    with api.opened(project / "q.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(store.MIGRATIONS)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == store.BUSY_TIMEOUT_S * 1000
        with pytest.raises(sqlite3.IntegrityError):  # foreign keys really are enforced
            conn.execute("INSERT INTO deps (task_id, depends_on) VALUES (98, 99)")


def test_reopening_applies_no_migration_twice(project: Path) -> None:
    with api.opened(project / "q.db") as conn:
        api.add_tasks(conn, [api.NewTask("x")])
    with api.opened(project / "q.db") as conn:
        assert [t.description for t in api.list_tasks(conn)] == ["x"]


def test_ids_are_never_reused(project: Path) -> None:
    with api.opened(project / "q.db") as conn:
        api.add_tasks(conn, [api.NewTask("a"), api.NewTask("b")])
        conn.execute("DELETE FROM tasks WHERE id = 2")
        assert api.add_tasks(conn, [api.NewTask("c")]) == [3]


def test_counts_follow_every_change(project: Path) -> None:
    with api.opened(project / "q.db") as conn:
        api.add_tasks(conn, [api.NewTask(f"t{n}") for n in range(12)])
        conn.execute("UPDATE tasks SET status = 'running' WHERE id % 3 = 0")
        conn.execute("UPDATE tasks SET status = 'completed' WHERE id % 4 = 0")
        conn.execute("UPDATE tasks SET status = 'failed' WHERE id = 5")
        conn.execute("DELETE FROM tasks WHERE id = 7")
        api.cancel(conn, 1)
        truth = dict(conn.execute("SELECT status, count(*) FROM tasks GROUP BY status").fetchall())
        assert api.counts(conn) == {s: truth.get(s, 0) for s in api.STATES}


def test_a_cycle_adds_nothing(project: Path) -> None:
    with api.opened(project / "q.db") as conn:
        batch = [
            api.NewTask("a", after_new=(2,), label="a"),
            api.NewTask("b", after_new=(0,), label="b"),
            api.NewTask("c", after_new=(1,), label="c"),
        ]
        with pytest.raises(UsageError, match=r"dependency cycle: a -> c -> b -> a"):
            api.add_tasks(conn, batch)
        with pytest.raises(UsageError, match="cycle"):
            api.add_tasks(conn, [api.NewTask("self", after_new=(0,))])
        assert api.list_tasks(conn) == []


def test_an_unknown_dependency_adds_nothing(project: Path) -> None:
    with api.opened(project / "q.db") as conn:
        api.add_tasks(conn, [api.NewTask("a")])
        with pytest.raises(TaskNotFound, match="task_009"):
            api.add_tasks(conn, [api.NewTask("b"), api.NewTask("c", depends_on=(1, 9))])
        assert len(api.list_tasks(conn)) == 1


def test_blocked_is_derived_from_the_dependencies(project: Path) -> None:
    with api.opened(project / "q.db") as conn:
        api.add_tasks(conn, [api.NewTask("a"), api.NewTask("b", after_new=(0,))])
        assert api.get_task(conn, 2).blocked
        conn.execute("UPDATE tasks SET status = 'completed' WHERE id = 1")
        assert not api.get_task(conn, 2).blocked
        assert api.get_task(conn, 2).depends_on == (1,)


def test_transitions_are_checked(project: Path) -> None:
    with api.opened(project / "q.db") as conn:
        api.add_tasks(conn, [api.NewTask("a")])
        with pytest.raises(InvalidTransition, match="task_001 is pending"):
            api.retry(conn, 1)
        assert api.cancel(conn, 1, now=100.0).status == "pending"  # returns the task as it was
        assert api.get_task(conn, 1).finished_at == 100.0
        with pytest.raises(TaskNotFound):
            api.cancel(conn, 2)


@pytest.mark.parametrize(("text", "expected"), [("task_001", 1), ("task_12", 12), ("7", 7), (" TASK_003 ", 3)])
def test_task_ids_parse(text: str, expected: int) -> None:
    assert api.parse_task_id(text) == expected
    assert store.task_name(expected).startswith("task_")


@pytest.mark.parametrize("text", ["", "task_", "0", "-1", "task_x", "1.5"])
def test_bad_task_ids_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        api.parse_task_id(text)


def _register_head(conn: sqlite3.Connection, pid: int, host: str, beat: float) -> None:
    conn.execute("DELETE FROM head")
    conn.execute(
        "INSERT INTO head (id, pid, host, started_at, heartbeat_at) VALUES (1, ?, ?, ?, ?)",
        (pid, host, beat - 60, beat),
    )


def test_the_head_is_live_only_with_a_live_pid_and_a_fresh_heartbeat(project: Path) -> None:
    host, now = os.uname().nodename, time.time()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with api.opened(project / "q.db") as conn:
        assert api.head(conn).running is False
        _register_head(conn, os.getpid(), host, now)
        assert api.head(conn, now=now + 1) == api.Head(True, os.getpid(), now - 60, now, None)
        assert api.head(conn, now=now + api.HEARTBEAT_STALE_S + 1).running is False
        _register_head(conn, int(dead.stdout), host, now)
        assert api.head(conn, now=now).running is False
        _register_head(conn, os.getpid(), "another-machine", now)
        assert api.head(conn, now=now).running is False
