"""The queue on disk: connecting, migrating, and the task row that the head and the CLI share."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from orchestrate.core.errors import ConfigError
from orchestrate.core.schema import MIGRATIONS
from orchestrate.core.states import Status

BUSY_TIMEOUT_S = 5.0
PRIORITIES = {"high": 0, "normal": 1, "low": 2}
STATES = tuple(Status)


def task_name(task_id: int) -> str:
    return f"task_{task_id:03d}"


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE: take the write lock up front so a busy queue waits instead of failing."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


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
    depends_on: tuple[int, ...]
    blocked: bool  # pending, with a dependency not completed yet (derived, never stored)

    @property
    def name(self) -> str:
        return task_name(self.id)


_TASK_COLUMNS = [f for f in Task._fields if f not in ("depends_on", "blocked", "context_files", "verify")]


def task_columns(table: str) -> str:
    """The columns task_from_row reads, from `table` (an alias, or `tasks` in a RETURNING clause)."""
    return f"""{", ".join(f"{table}.{c}" for c in _TASK_COLUMNS)}, {table}.context_files, {table}.verify,
        (SELECT group_concat(d.depends_on) FROM deps d WHERE d.task_id = {table}.id) AS depends_on,
        {table}.status = '{Status.PENDING}' AND EXISTS (
            SELECT 1 FROM deps d JOIN tasks p ON p.id = d.depends_on
            WHERE d.task_id = {table}.id AND p.status <> '{Status.COMPLETED}') AS blocked"""


SELECT_TASKS = f"SELECT {task_columns('t')} FROM tasks t"


def task_from_row(row: sqlite3.Row) -> Task:
    import json  # imported where used: `status` never needs it and must start fast

    deps = tuple(sorted(int(d) for d in row["depends_on"].split(","))) if row["depends_on"] else ()
    return Task(
        **{c: row[c] for c in _TASK_COLUMNS},
        context_files=tuple(json.loads(row["context_files"])),
        verify=None if row["verify"] is None else tuple(json.loads(row["verify"])),
        depends_on=deps,
        blocked=bool(row["blocked"]),
    )
