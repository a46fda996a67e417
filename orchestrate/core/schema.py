"""The queue's schema: ordered migrations, each applied once and never edited after release."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable


def m001_initial(conn: sqlite3.Connection) -> None:
    for statement in (
        """CREATE TABLE tasks (
            id INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: an id is never reused
            description TEXT NOT NULL CHECK (description <> ''),
            status TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
            priority INTEGER NOT NULL CHECK (priority IN (0, 1, 2)),
            rank INTEGER NOT NULL,  -- the priority claims sort by: low is promoted after waiting
            agent_type TEXT,        -- preferred agent (an entry name or an adapter type)
            agent TEXT,             -- the slot that ran it last, e.g. claude-1
            attempts INTEGER NOT NULL DEFAULT 0,
            max_retries INTEGER NOT NULL,
            timeout_seconds REAL,
            context_files TEXT NOT NULL DEFAULT '[]',
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            not_before REAL NOT NULL DEFAULT 0,  -- retry backoff: not claimable before this
            lease_until REAL,
            pid INTEGER,            -- process group of the running agent
            session_id TEXT,
            result TEXT,
            error TEXT,
            output_file TEXT,
            log_file TEXT,
            cost_usd REAL,
            input_tokens INTEGER,
            output_tokens INTEGER
        )""",
        "CREATE INDEX tasks_by_status ON tasks (status, rank, id)",
        "CREATE INDEX tasks_by_finish ON tasks (status, finished_at)",  # status: the latest failures
        """CREATE TABLE deps (
            task_id INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
            depends_on INTEGER NOT NULL REFERENCES tasks (id),
            PRIMARY KEY (task_id, depends_on)
        ) WITHOUT ROWID""",
        "CREATE INDEX deps_by_dependency ON deps (depends_on)",
        # Counts kept by triggers, so `status` reads five rows however long the queue grows.
        "CREATE TABLE task_counts (status TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID",
        """INSERT INTO task_counts (status, n) VALUES
            ('pending', 0), ('running', 0), ('completed', 0), ('failed', 0), ('cancelled', 0)""",
        """CREATE TRIGGER task_counts_insert AFTER INSERT ON tasks BEGIN
            UPDATE task_counts SET n = n + 1 WHERE status = NEW.status;
        END""",
        """CREATE TRIGGER task_counts_update AFTER UPDATE OF status ON tasks
        WHEN OLD.status <> NEW.status BEGIN
            UPDATE task_counts SET n = n - 1 WHERE status = OLD.status;
            UPDATE task_counts SET n = n + 1 WHERE status = NEW.status;
        END""",
        """CREATE TRIGGER task_counts_delete AFTER DELETE ON tasks BEGIN
            UPDATE task_counts SET n = n - 1 WHERE status = OLD.status;
        END""",
        """CREATE TABLE head (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            pid INTEGER NOT NULL,
            host TEXT NOT NULL,
            started_at REAL NOT NULL,
            heartbeat_at REAL NOT NULL,
            log_file TEXT
        )""",
        """CREATE TABLE agents (
            id TEXT PRIMARY KEY,
            type TEXT NOT NULL,
            state TEXT NOT NULL,
            task_id INTEGER,
            pid INTEGER,
            rss_mb REAL,
            tasks_done INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL NOT NULL DEFAULT 0,
            since REAL,
            note TEXT
        )""",
    ):
        conn.execute(statement)


def m002_workspaces(conn: sqlite3.Connection) -> None:
    """A task's own workspace mode and checks; NULL means the configuration's."""
    conn.execute("ALTER TABLE tasks ADD COLUMN workspace TEXT CHECK (workspace IN ('shared', 'worktree'))")
    conn.execute("ALTER TABLE tasks ADD COLUMN verify TEXT")  # a JSON list of shell commands


def m003_claims(conn: sqlite3.Connection) -> None:
    """A claim counter: each claim of a task takes the next number, and every write the head makes
    for that run names it, so a run whose claim has moved on records nothing. The lease it
    replaces was never read: one head per queue file, held by a lock, recovers every running row."""
    conn.execute("ALTER TABLE tasks ADD COLUMN claim INTEGER NOT NULL DEFAULT 0")
    conn.execute("ALTER TABLE tasks DROP COLUMN lease_until")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [m001_initial, m002_workspaces, m003_claims]
