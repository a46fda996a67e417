"""Build tasks.db.example: a small queue with a task in every state, for newcomers to inspect.

    python tests/example_db.py tasks.db.example

test_example_db.py rebuilds it and compares, so the committed file never goes stale.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from orchestrate import api

T0 = 1_767_261_600.0  # 2026-01-01 10:00 UTC: fixed, so every build is the same

TASKS = [
    # description, priority, preferred agent, after (positions), final fields
    (
        "Create README.md with project description",
        "normal",
        None,
        (),
        {
            "status": "completed",
            "agent": "claude-1",
            "attempts": 1,
            "cost_usd": 0.0213,
            "input_tokens": 3496,
            "output_tokens": 82,
            "result": "Created README.md",
            "output_file": "context/agent_outputs/task_001_output.md",
            "log_file": ".orchestrate/logs/task_001.log",
        },
    ),
    (
        "Write unit tests for the auth module",
        "high",
        "codex",
        (),
        {
            "status": "completed",
            "agent": "codex-1",
            "attempts": 2,
            "input_tokens": 11062,
            "output_tokens": 184,
            "result": "Added tests/test_auth.py; 12 tests pass",
            "output_file": "context/agent_outputs/task_002_output.md",
            "log_file": ".orchestrate/logs/task_002.log",
        },
    ),
    (
        "Invalid task: @#$%^&*()",
        "normal",
        None,
        (),
        {
            "status": "failed",
            "agent": "claude-2",
            "attempts": 4,
            "error": "claude exited 1: API Error: 400 the request could not be understood",
            "log_file": ".orchestrate/logs/task_003.log",
        },
    ),
    (
        "Add a /health endpoint that reports the queue depth",
        "normal",
        "claude",
        (),
        {"status": "running", "agent": "claude-1", "pid": 4242, "log_file": ".orchestrate/logs/task_004.log"},
    ),
    ("Document every configuration option in the README", "high", None, (), {"plan": 1}),
    ("Publish the documentation site", "low", "gemini", (4,), {"parent": 5}),  # queued by task_005's agent
    ("Rewrite the queue in Rust", "low", None, (), {"status": "cancelled"}),
]


def build(path: Path) -> None:
    path.unlink(missing_ok=True)
    batch = [
        api.NewTask(description=d, priority=api.PRIORITIES[p], agent_type=a, after_new=after)
        for d, p, a, after, _ in TASKS
    ]
    with api.opened(path) as conn:
        ids = api.add_tasks(conn, batch, now=T0)
        for n, (task_id, (*_, fields)) in enumerate(zip(ids, TASKS, strict=True)):
            started = T0 + 60 * n
            times = {"created_at": T0 + n}
            if fields.get("status", "pending") != "pending":
                times |= {"started_at": started, "finished_at": started + 95}
            if fields.get("status") == "running":
                times["finished_at"] = None
            values = fields | times
            columns = ", ".join(f"{k} = ?" for k in values)
            conn.execute(f"UPDATE tasks SET {columns} WHERE id = ?", (*values.values(), task_id))
        conn.execute("PRAGMA journal_mode=DELETE")  # one self-contained file for the repository
        conn.execute("VACUUM")


def dump(path: Path) -> tuple[list[tuple[object, ...]], ...]:
    """What must match between the committed example and a fresh build: schema and rows."""
    conn = sqlite3.connect(path)
    try:
        return (
            conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall(),
            conn.execute("PRAGMA user_version").fetchall(),
            conn.execute("SELECT * FROM tasks ORDER BY id").fetchall(),
            conn.execute("SELECT * FROM deps ORDER BY task_id, depends_on").fetchall(),
        )
    finally:
        conn.close()


if __name__ == "__main__":
    build(Path(sys.argv[1] if len(sys.argv) > 1 else "tasks.db.example"))
