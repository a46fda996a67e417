"""The queue on disk: its schema (ordered migrations, each applied once and never edited after
release), connecting and migrating, and the task row that the head and the CLI share."""

# No `from __future__ import annotations` here: NamedTuple compiles each string annotation into
# a ForwardRef, half the cost of the class, and every command imports this module.

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from orchestrate.core.errors import ConfigError
from orchestrate.core.states import Status

BUSY_TIMEOUT_S = 5.0


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


def m004_runs(conn: sqlite3.Connection) -> None:
    """One row per run of an agent, never overwritten, written by the runs feature: a task's cost
    and tokens become the sums over its runs, and `spending` the sum over every run, so that
    `status` reads one row."""
    for statement in (
        """CREATE TABLE runs (
            task_id INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
            n INTEGER NOT NULL,  -- its ordinal among the task's runs, from 1
            claim INTEGER NOT NULL,
            agent TEXT NOT NULL,  -- the slot, e.g. claude-1
            agent_type TEXT NOT NULL,
            started_at REAL NOT NULL,
            finished_at REAL NOT NULL,
            outcome TEXT NOT NULL,  -- how it ended: completed, failed, timeout... (orchestrate/runs.py)
            exit_code INTEGER,
            error TEXT,
            cost_usd REAL,
            input_tokens INTEGER,
            output_tokens INTEGER,
            session_id TEXT,
            log_start INTEGER,  -- where its output starts and ends in the task's log, in bytes
            log_end INTEGER,
            PRIMARY KEY (task_id, n)
        ) WITHOUT ROWID""",
        # counted_from: the total when `retry` last gave task_queue.max_cost_usd a fresh count
        "CREATE TABLE spending (id INTEGER PRIMARY KEY CHECK (id = 1), cost_usd REAL NOT NULL, counted_from REAL NOT NULL)",
        "INSERT INTO spending SELECT 1, total(cost_usd), 0 FROM tasks",  # an older queue kept the latest runs' costs
        "ALTER TABLE tasks ADD COLUMN max_cost_usd REAL",  # a claude run's --max-budget-usd
    ):
        conn.execute(statement)


def m005_plans(conn: sqlite3.Connection) -> None:
    """Who queued a task (the task whose agent ran `orchestrate add`), whether it is a plan whose
    agent is told how to queue subtasks, and a row while a person holds the queue (`orchestrate pause`)."""
    conn.execute("ALTER TABLE tasks ADD COLUMN parent INTEGER REFERENCES tasks (id)")
    conn.execute("CREATE INDEX tasks_by_parent ON tasks (parent) WHERE parent IS NOT NULL")
    conn.execute("ALTER TABLE tasks ADD COLUMN plan INTEGER NOT NULL DEFAULT 0 CHECK (plan IN (0, 1))")
    conn.execute("CREATE TABLE paused (id INTEGER PRIMARY KEY CHECK (id = 1), since REAL NOT NULL)")


def m006_ready(conn: sqlite3.Connection) -> None:
    """Claims and lists that visit only the rows they return, however many others wait.

    `waiting` counts a task's dependencies not completed, kept by triggers; a backoff that has run
    out is cleared to 0 by the claim, through the index of the rows in backoff. So the rows a claim
    may take are exactly those in `tasks_ready`, by the agent they prefer."""
    for statement in (
        "ALTER TABLE tasks ADD COLUMN waiting INTEGER NOT NULL DEFAULT 0",
        """UPDATE tasks SET waiting = (SELECT count(*) FROM deps d JOIN tasks p ON p.id = d.depends_on
            WHERE d.task_id = tasks.id AND p.status <> 'completed')""",
        f"CREATE INDEX tasks_ready ON tasks ({KIND}, rank, id) WHERE {READY}",
        "CREATE INDEX tasks_in_backoff ON tasks (not_before) WHERE status = 'pending' AND not_before > 0",
        "CREATE INDEX tasks_aging ON tasks (created_at) WHERE status = 'pending' AND rank = 2",
        "DROP INDEX tasks_by_status",  # claims have tasks_ready: every status change paid for it
        "CREATE INDEX tasks_by_status_id ON tasks (status, id)",  # a status's tasks, newest first for the dashboard
        """CREATE TRIGGER waiting_on_dependency AFTER INSERT ON deps BEGIN
            UPDATE tasks SET waiting = waiting + 1
            WHERE id = NEW.task_id AND (SELECT status FROM tasks WHERE id = NEW.depends_on) <> 'completed';
        END""",
        """CREATE TRIGGER waiting_on_completion AFTER UPDATE OF status ON tasks
        WHEN (OLD.status = 'completed') <> (NEW.status = 'completed') BEGIN
            UPDATE tasks SET waiting = waiting + CASE NEW.status WHEN 'completed' THEN -1 ELSE 1 END
            WHERE id IN (SELECT task_id FROM deps WHERE depends_on = NEW.id);
        END""",
    ):
        conn.execute(statement)


READY = "status = 'pending' AND waiting = 0 AND not_before = 0"  # tasks_ready's rows: claimable now
KIND = "coalesce(agent_type, '')"  # the agent a task prefers, '' for none: tasks_ready's order
MIGRATIONS = [m001_initial, m002_workspaces, m003_claims, m004_runs, m005_plans, m006_ready]


def task_name(task_id: int) -> str:
    return f"task_{task_id:03d}"


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE: take the write lock up front so a busy queue waits instead of failing."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")  # inside: a commit that fails (a full disk) is rolled back too
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise ConfigError(
            f"{path}: written by a newer orchestrate (schema {version}, this one knows"
            f" {len(MIGRATIONS)}); upgrade orchestrate"
        )
    if version == len(MIGRATIONS):
        return
    tables = "SELECT count(*) FROM sqlite_master"
    if version == 0 and not conn.execute(tables).fetchone()[0]:
        conn.execute("PRAGMA journal_mode=WAL")  # only on a new, empty file: never on someone else's
    with transaction(conn):
        # Read again under the write lock: another process may have migrated meanwhile.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0 and conn.execute(tables).fetchone()[0]:
            raise ConfigError(f"{path}: an SQLite file that is not an orchestrate queue")
        for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
            migration(conn)
            conn.execute(f"PRAGMA user_version={number}")


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the queue at `path`, migrated to this version's schema."""
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys=ON")
    _migrate(conn, path)
    return conn


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite gave up waiting for another connection's lock."""
    return "locked" in str(exc) or "busy" in str(exc)


class Task(NamedTuple):
    id: int
    description: str
    status: str
    priority: int
    agent_type: str | None
    agent: str | None
    attempts: int
    max_retries: int
    timeout_seconds: float | None
    context_files: tuple[str, ...]
    created_at: float
    started_at: float | None
    finished_at: float | None
    not_before: float
    pid: int | None
    session_id: str | None
    error: str | None
    output_file: str | None
    log_file: str | None
    cost_usd: float | None
    input_tokens: int | None
    output_tokens: int | None
    workspace: str | None  # "shared" or "worktree"; None: the configuration's
    verify: tuple[str, ...] | None  # None: the agent's or the project's checks
    claim: int  # how many times it was claimed: the token of its latest run
    max_cost_usd: float | None  # what one run may spend; None: the agent's limit, if any
    parent: int | None  # the task whose agent queued it
    plan: int  # 1: a plan, whose agent is told how to queue subtasks
    depends_on: tuple[int, ...]
    blocked: bool  # pending, with a dependency not completed yet (derived, never stored)

    @property
    def name(self) -> str:
        return task_name(self.id)


_STORED = Task._fields[:-2]  # every field but the derived depends_on and blocked: the table's columns
_CONTEXT, _VERIFY = _STORED.index("context_files"), _STORED.index("verify")


def task_columns(table: str) -> str:
    """The columns task_from_row reads, from `table` (an alias, or `tasks` in a RETURNING clause)."""
    return f"""{", ".join(f"{table}.{c}" for c in _STORED)},
        (SELECT group_concat(d.depends_on) FROM deps d WHERE d.task_id = {table}.id) AS depends_on,
        {table}.status = '{Status.PENDING}' AND {table}.waiting > 0 AS blocked"""


SELECT_TASKS = f"SELECT {task_columns('t')} FROM tasks t"


def task_from_row(row: sqlite3.Row) -> Task:
    """By position, in Task's order: a column found by name is compared with every column's name."""
    import json  # imported where used: `status` never needs it and must start fast

    values = list(row)
    context, verify, depends = values[_CONTEXT], values[_VERIFY], values[-2]
    values[_CONTEXT] = tuple(json.loads(context)) if context != "[]" else ()
    values[_VERIFY] = None if verify is None else tuple(json.loads(verify))
    values[-2] = tuple(sorted(int(d) for d in depends.split(","))) if depends else ()
    values[-1] = bool(values[-1])
    return Task._make(values)
