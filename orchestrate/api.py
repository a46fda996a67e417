"""The queue's synchronous API, shared by the commands, the dashboard and the benchmark: add, list,
show, retry and cancel tasks; read the head's state."""

# No `from __future__ import annotations` here: NamedTuple compiles each string annotation into
# a ForwardRef, half the cost of the class, and every command imports this module.

import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from orchestrate.core.config import Config
from orchestrate.core.errors import (
    ConfigError,
    InvalidTransition,
    OrchestrateError,
    QueueBusy,
    TaskNotFound,
    UsageError,
)
from orchestrate.core.states import TRANSITIONS, Event, Status
from orchestrate.core.store import (
    BUSY_TIMEOUT_S,
    SELECT_TASKS,
    Task,
    is_busy,
    task_columns,
    task_from_row,
    task_name,
    transaction,
)
from orchestrate.core.store import connect as connect_file

MAX_ID = 2**63 - 1  # SQLite's largest integer: a larger id names no task
STATES = tuple(Status)
PRIORITIES = {"high": 0, "normal": 1, "low": 2}  # as the tasks table stores them
HEARTBEAT_STALE_S = 10.0  # the head beats every second; this much silence means it is gone


def queue_of(cfg: Config, *, create: bool = True) -> AbstractContextManager[sqlite3.Connection]:
    """A connection to the configuration's queue: its SQLite file, or its PostgreSQL database."""
    if (pg := cfg.features.get("postgres")) is None:
        return opened(cfg.task_queue.database, create=create)
    from orchestrate import postgres

    return opened(
        postgres.shown(pg.url), create=True, connect=lambda: postgres.Connection(pg, str(cfg.task_queue.database))
    )


@contextmanager
def opened(path: Path | str, *, create: bool = True, connect: Any = None) -> Iterator[sqlite3.Connection]:
    """A connection to the queue at `path` (or made by `connect`), with the database's errors turned into ours.

    Without `create`, a queue that does not exist yet reads as an empty one.
    """
    target = Path(path) if create or Path(path).exists() else Path(":memory:")
    try:
        conn = connect() if connect else connect_file(target)
        try:
            yield conn
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:
        if is_busy(exc):
            raise QueueBusy(
                f"{path}: the queue is busy (another process held it locked for over {BUSY_TIMEOUT_S:g} s); try again"
            ) from None
        raise ConfigError(f"{path}: cannot use the queue ({exc}); check the path and its directory") from None
    except sqlite3.DatabaseError as exc:
        if type(exc) is not sqlite3.DatabaseError:  # integrity errors are our bugs
            raise
        raise ConfigError(f"{path}: not an orchestrate queue ({exc})") from None


def parse_task_id(text: str) -> int:
    """Accept `task_001`, `task_1` or `1`."""
    digits = text.strip().lower().removeprefix("task_").removeprefix("task-")
    if digits.isascii() and digits.isdigit() and digits.strip("0"):
        if len(digits := digits.lstrip("0")) > 19:  # past any id (and int() refuses past 4,300 digits)
            shown = digits if len(digits) <= 40 else f"{digits[:40]}... ({len(digits)} digits)"
            raise TaskNotFound(f"task_{shown} does not exist; `orchestrate tasks` lists the queue")
        return int(digits)
    raise UsageError(f"{text!r} is not a task id; use task_001, task_1 or 1")


class NewTask(NamedTuple):
    description: str
    priority: int = PRIORITIES["normal"]
    agent_type: str | None = None
    timeout_seconds: float | None = None
    max_retries: int = 3
    context_files: tuple[str, ...] = ()
    depends_on: tuple[int, ...] = ()  # ids of tasks already in the queue
    after_new: tuple[int, ...] = ()  # positions of other tasks in the same batch
    label: str = ""  # what the user calls it in a task file, for messages
    workspace: str | None = None
    verify: tuple[str, ...] | None = None
    max_cost_usd: float | None = None  # what one of its claude runs may spend
    parent: int | None = None  # the task whose agent queued it
    plan: bool = False  # its agent is told how to queue subtasks


def _check_acyclic(batch: Sequence[NewTask]) -> None:
    state: dict[int, int] = {}  # 1 visiting, 2 done

    def visit(i: int, trail: list[int]) -> None:
        if state.get(i) == 2:
            return
        if state.get(i) == 1:
            loop = [*trail[trail.index(i) :], i]
            names = " -> ".join(batch[j].label or f"#{j + 1}" for j in loop)
            raise UsageError(f"dependency cycle: {names}; nothing was added")
        state[i] = 1
        for j in batch[i].after_new:
            visit(j, [*trail, i])
        state[i] = 2

    for i in range(len(batch)):
        visit(i, [])


def add_tasks(
    conn: sqlite3.Connection, batch: Sequence[NewTask], now: float | None = None, max_subtasks: int | None = None
) -> list[int]:
    """Queue every task of `batch` in one transaction, or none of them; a parent may have at most
    `max_subtasks` children (task_queue.max_subtasks), counting those it queued before."""
    for new in batch:
        where = f"task {new.label}: " if new.label else ""
        if not new.description.strip():
            raise UsageError(f"{where}a task needs a description; got an empty one")
        try:
            new.description.encode()
        except UnicodeEncodeError:  # bytes the shell passed that are not text
            raise UsageError(f"{where}the task text is not valid UTF-8; nothing was added") from None
    _check_acyclic(batch)
    now = time.time() if now is None else now
    with transaction(conn):
        wanted = sorted({d for new in batch for d in new.depends_on})
        stored = [d for d in wanted if d <= MAX_ID]  # a larger id names no task
        found = {
            r[0] for r in conn.execute(f"SELECT id FROM tasks WHERE id IN ({','.join('?' * len(stored))})", stored)
        }
        for missing in (d for d in wanted if d not in found):
            raise TaskNotFound(f"{task_name(missing)} does not exist, so nothing can wait for it; nothing was added")
        _check_parents(conn, batch, max_subtasks)
        ids = [_insert(conn, new, now) for new in batch]
        conn.executemany(
            "INSERT INTO deps (task_id, depends_on) VALUES (?, ?) ON CONFLICT DO NOTHING",  # named twice: one
            [(ids[i], d) for i, new in enumerate(batch) for d in new.depends_on]
            + [(ids[i], ids[j]) for i, new in enumerate(batch) for j in new.after_new],
        )
    return ids


def add(conn: sqlite3.Connection, cfg: Config, batch: Sequence[NewTask], now: float | None = None) -> list[int]:
    """Queue `batch` as `orchestrate add` and the dashboard's form do: a task in worktree mode needs
    a repository to branch from, and a parent may queue at most task_queue.max_subtasks tasks."""
    from orchestrate import plans
    from orchestrate.workspace import settings  # a small package, read only by the commands that need it

    if any(new.workspace == "worktree" for new in batch) and settings(cfg).mode != "worktree":
        from orchestrate.workspace import branches

        branches.require_repository(cfg.root)
    return add_tasks(conn, batch, now, plans.max_subtasks(cfg))


def notes(conn: sqlite3.Connection, cfg: Config, ids: Sequence[int], batch: Sequence[NewTask]) -> dict[int, list[str]]:
    """What to tell whoever queued `batch` (as `ids`) about each task: that it prefers an agent the
    configuration does not have, or waits on a task that failed or was cancelled, so cannot run."""
    from orchestrate.configfile import agent_names

    known = agent_names(cfg)
    stuck = blockers(conn) if any(new.depends_on or new.after_new for new in batch) else {}
    found: dict[int, list[str]] = {}
    for task_id, new in zip(ids, batch, strict=True):
        name, said = task_name(task_id), found.setdefault(task_id, [])
        if new.agent_type and new.agent_type not in known:
            said.append(f"no agent {new.agent_type!r} is configured, so any agent may take {name}")
        if why := stuck.get(task_id):
            said.append(f"{name} will not run until {task_name(why.cause)} is retried: {why}")
    return found


def _check_parents(conn: sqlite3.Connection, batch: Sequence[NewTask], max_subtasks: int | None) -> None:
    """Every parent exists, and none has more children than `max_subtasks` once `batch` is in."""
    for parent in sorted({new.parent for new in batch if new.parent is not None}):
        row = conn.execute(
            "SELECT (SELECT count(*) FROM tasks c WHERE c.parent = p.id) FROM tasks p WHERE p.id = ?",
            (parent,) if parent <= MAX_ID else (0,),
        ).fetchone()
        if row is None:
            raise TaskNotFound(f"{task_name(parent)} does not exist, so it cannot be a parent; nothing was added")
        adding = sum(new.parent == parent for new in batch)
        if max_subtasks is not None and row[0] + adding > max_subtasks:
            raise UsageError(
                f"{task_name(parent)} may queue at most {max_subtasks} subtasks (task_queue.max_subtasks) and has"
                f" queued {row[0]}, so these {adding} were not added; finish with the subtasks already queued,"
                " or make fewer, larger ones"
            )


def _insert(conn: sqlite3.Connection, new: NewTask, now: float) -> int:
    row = conn.execute(
        """INSERT INTO tasks (description, priority, rank, agent_type, max_retries, timeout_seconds,
               context_files, created_at, workspace, verify, max_cost_usd, parent, plan)
           VALUES (?, ?, ?, ?, ?, ?, json(?), ?, ?, json(?), ?, ?, ?) RETURNING id""",
        (
            new.description,
            new.priority,
            new.priority,
            new.agent_type,
            new.max_retries,
            new.timeout_seconds,
            _json_list(new.context_files),
            now,
            new.workspace,
            None if new.verify is None else _json_list(new.verify),
            new.max_cost_usd,
            new.parent,
            int(new.plan),
        ),
    ).fetchone()
    return int(row[0])


def _json_list(items: Sequence[str]) -> str:
    if not items:
        return "[]"  # the common case, without importing json on the `add` path
    import json

    return json.dumps(list(items))


def get_task(conn: sqlite3.Connection, task_id: int) -> Task:
    row = conn.execute(SELECT_TASKS + " WHERE t.id = ?", (task_id,)).fetchone() if task_id <= MAX_ID else None
    if row is None:
        raise TaskNotFound(f"{task_name(task_id)} does not exist; `orchestrate tasks` lists the queue")
    return task_from_row(row)


def log_path(cfg: Config, task: Task) -> Path:
    """The task's log: where its row says (relative to the project), else where the head will write it."""
    return cfg.root / task.log_file if task.log_file else cfg.runtime_dir / "logs" / f"{task.name}.log"


class Run(NamedTuple):
    """One run of an agent on a task, as the runs table keeps it (never overwritten)."""

    n: int  # its ordinal among the task's runs, from 1
    claim: int
    agent: str  # the slot, e.g. claude-1
    agent_type: str
    started_at: float
    finished_at: float | None
    outcome: str  # one of orchestrate.runs.OUTCOMES
    exit_code: int | None
    error: str | None
    cost_usd: float | None
    input_tokens: int | None
    output_tokens: int | None
    session_id: str | None
    log_start: int | None  # its part of the task's log, in bytes
    log_end: int | None


SELECT_RUNS = f"SELECT {', '.join(Run._fields)} FROM runs WHERE task_id = ?"


def runs(conn: sqlite3.Connection, task_id: int) -> list[Run]:
    """The task's runs, the first first (a range of the primary key: cheap however long the queue)."""
    return [Run(*r) for r in conn.execute(SELECT_RUNS + " ORDER BY n", (task_id,))]


def log_part(conn: sqlite3.Connection, cfg: Config, task: Task, n: int) -> tuple[Path, int, int]:
    """Where run `n`'s output is in the task's log: the file, and its first and end byte."""
    row = conn.execute(SELECT_RUNS + " AND n = ?", (task.id, n)).fetchone() if n <= MAX_ID else None
    if row is None:
        last = conn.execute("SELECT max(n) FROM runs WHERE task_id = ?", (task.id,)).fetchone()[0]
        has = (
            "no run has ended yet" if last is None else "it has run 1 only" if last == 1 else f"it has runs 1 to {last}"
        )
        raise OrchestrateError(f"{task.name} has no run {n}: {has} (`orchestrate show {task.name}` lists them)")
    run, path = Run(*row), log_path(cfg, task)
    if run.log_start is None or run.log_end is None:
        raise OrchestrateError(
            f"{task.name}'s run {n} has no place in the log on record; `orchestrate logs {task.name}` prints all of it"
        )
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise OrchestrateError(f"{task.name} has no log to read run {n} from ({path}: {exc.strerror})") from None
    if size < run.log_end:
        raise OrchestrateError(
            f"{path} is shorter ({size} bytes) than where run {n} ended ({run.log_end}): it was cut or replaced"
        )
    return path, run.log_start, run.log_end


class Spending(NamedTuple):
    """What the runs cost: over every run ever, and since the spending cap's count last began."""

    cost_usd: float
    counted_from: float
    cap: float | None  # task_queue.max_cost_usd

    @property
    def counted(self) -> float:
        """What counts toward the cap."""
        return self.cost_usd - self.counted_from

    @property
    def held(self) -> str | None:
        """Why the head claims nothing more, or None."""
        from orchestrate.shapes import held  # shapes imports this module: here, not at the top

        return held(self.counted, self.cap)


def spending(conn: sqlite3.Connection, cap: float | None) -> Spending:
    """The queue's one-row total of what its runs cost, under the spending cap `cap`."""
    row = conn.execute("SELECT cost_usd, counted_from FROM spending").fetchone()
    return Spending(float(row[0]), float(row[1]), cap) if row else Spending(0.0, 0.0, cap)


def spending_cap(cfg: Config) -> float | None:
    """task_queue.max_cost_usd, from the runs feature's settings (without importing that feature)."""
    cap: float | None = getattr(cfg.features.get("runs"), "max_cost_usd", None)
    return cap


# In the runtime folder, beside (not in) the worktrees: {"bytes": N, "measured_at": T}, by branches.measure.
USAGE_FILE = "worktrees-usage.json"


class Worktrees(NamedTuple):
    """The task worktrees: how many there are, and their bytes as last measured."""

    found: int  # not `count`, which a tuple has already
    bytes: int = 0
    measured_at: float | None = None  # None: not measured yet, so `bytes` is 0


def worktree_usage(cfg: Config) -> Worktrees:
    """Count the task worktrees (one scandir) and read their last measured size: never a walk
    through them, since a worktree with its dependencies installed holds many files."""
    folder = cfg.runtime_dir / "worktrees"
    try:
        with os.scandir(folder) as entries:
            found = sum(1 for entry in entries if entry.is_dir())
    except OSError:
        return Worktrees(0)
    return Worktrees(found, *_measured(cfg.runtime_dir / USAGE_FILE)) if found else Worktrees(0)


def _measured(path: Path) -> tuple[int, float | None]:
    """The bytes and time branches.measure recorded in `path`; (0, None) if it has not, or wrote garbage."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return 0, None
    import json  # only with worktrees to report: the common `status` spares it

    try:
        found = json.loads(text)
        return int(found["bytes"]), float(found["measured_at"])
    except (ValueError, TypeError, KeyError):
        return 0, None


LIST_FILTERS: dict[str, str] = {
    "all": "TRUE",
    **{s: f"t.status = '{s}'" for s in STATES},
    "active": f"t.status = '{Status.RUNNING}'",
    # as store.task_columns' blocked (waiting > 0), found from the dependencies not completed, not
    # by looking at every pending task
    "blocked": f"""t.status = '{Status.PENDING}' AND t.id IN (SELECT d.task_id FROM deps d
        JOIN tasks p ON p.id = d.depends_on WHERE p.status <> '{Status.COMPLETED}')""",
}


def list_tasks(conn: sqlite3.Connection, status: str = "all") -> list[Task]:
    """Tasks in the order they were added; `status` is a key of LIST_FILTERS."""
    where = LIST_FILTERS[status]
    return [task_from_row(r) for r in conn.execute(f"{SELECT_TASKS} WHERE {where} ORDER BY t.id")]


def children(conn: sqlite3.Connection, task_id: int) -> list[Task]:
    """The tasks `task_id`'s agents queued, oldest first."""
    return [task_from_row(r) for r in conn.execute(f"{SELECT_TASKS} WHERE t.parent = ? ORDER BY t.id", (task_id,))]


def paused(conn: sqlite3.Connection) -> float | None:
    """Since when the queue is paused (the head claims nothing), or None."""
    row = conn.execute("SELECT since FROM paused").fetchone()
    return None if row is None else float(row[0])


def pause(conn: sqlite3.Connection, now: float | None = None) -> float | None:
    """Hold the queue: the head claims nothing more until `resume`; since when it already was, or None."""
    with transaction(conn):
        was = paused(conn)
        conn.execute("INSERT INTO paused VALUES (1, ?) ON CONFLICT DO NOTHING", (time.time() if now is None else now,))
    return was


def resume(conn: sqlite3.Connection) -> float | None:
    """Let the head claim again; since when the queue was paused, or None if it was not."""
    with transaction(conn):
        was = paused(conn)
        conn.execute("DELETE FROM paused")
    return was


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    found = dict(conn.execute("SELECT status, n FROM task_counts").fetchall())
    return {s: found.get(s, 0) for s in STATES}


def recent_failures(conn: sqlite3.Connection, limit: int = 5) -> list[Task]:
    rows = conn.execute(
        f"{SELECT_TASKS} WHERE t.status = ? ORDER BY t.finished_at DESC LIMIT ?", (Status.FAILED, limit)
    )
    return [task_from_row(r) for r in rows]


VERBS = {Event.CANCEL: "cancelled", Event.RETRY: "retried"}


def change(status: str, event: Event, name: str = "the task") -> Status:
    """The state a person's `event` leads to from `status` (core/states.py's TRANSITIONS);
    InvalidTransition, in words, if it cannot happen there. The head's own moves are guarded in
    their SQL (`status IN` the event's sources)."""
    sources, target = TRANSITIONS[event]
    if status not in sources:
        verb = VERBS.get(event, event.value)
        raise InvalidTransition(f"{name} is {status}; only {' or '.join(sources)} tasks can be {verb}")
    return target


def _transition(conn: sqlite3.Connection, task_id: int, event: Event, sql: str, args: tuple[Any, ...]) -> Task:
    with transaction(conn):
        before = get_task(conn, task_id)
        target = change(before.status, event, before.name)  # InvalidTransition, unless the state allows it
        conn.execute(sql, (target, *args, task_id))
    return before


def retry(conn: sqlite3.Connection, task_id: int, now: float | None = None) -> Task:
    """Put a failed or cancelled task back in the queue with a fresh retry budget; a pending one
    waiting out a retry backoff becomes due now, with a fresh budget too. Either way the spending
    cap (task_queue.max_cost_usd) begins a fresh count; the task's runs stay on record."""
    now = time.time() if now is None else now
    with transaction(conn):
        before = get_task(conn, task_id)
        conn.execute(COUNT_AFRESH)  # undone with the rest if the task cannot be retried
        if before.status == Status.PENDING:
            if before.not_before <= now:
                raise InvalidTransition(
                    f"{before.name} is pending and not waiting to retry; only failed or cancelled tasks,"
                    " or pending ones waiting out a retry backoff, can be retried"
                )
            # pending to pending: no transition in core/states.py, only the backoff and budget reset
            conn.execute("UPDATE tasks SET attempts = 0, not_before = 0 WHERE id = ?", (task_id,))
            return before
        target = change(before.status, Event.RETRY, before.name)
        conn.execute(
            """UPDATE tasks SET status = ?, attempts = 0, not_before = 0, agent = NULL,
                   started_at = NULL, finished_at = NULL, pid = NULL
               WHERE id = ?""",
            (target, task_id),
        )
    return before


COUNT_AFRESH = "UPDATE spending SET counted_from = cost_usd"


def next_try(task: Task, now: float | None = None) -> float | None:
    """When a pending task waiting out a retry backoff may be claimed again; None if it is not waiting."""
    now = time.time() if now is None else now
    return task.not_before if task.status == Status.PENDING and task.not_before > now else None


def backing_off(conn: sqlite3.Connection, now: float | None = None, limit: int = 5) -> list[Task]:
    """Pending tasks waiting out a retry backoff, the soonest due first."""
    now = time.time() if now is None else now
    rows = conn.execute(  # through the index of the tasks in backoff, however many others are pending
        f"""SELECT {task_columns("t")} FROM tasks t INDEXED BY tasks_in_backoff
            WHERE t.status = 'pending' AND t.not_before > 0 AND t.not_before > ? ORDER BY t.not_before LIMIT ?""",
        (now, limit),
    )
    return [task_from_row(r) for r in rows]


def cancel(conn: sqlite3.Connection, task_id: int, now: float | None = None) -> Task:
    """Stop a pending or running task for good; the head kills a running one's agent."""
    now = time.time() if now is None else now
    return _transition(conn, task_id, Event.CANCEL, "UPDATE tasks SET status = ?, finished_at = ? WHERE id = ?", (now,))


def waiting_on(conn: sqlite3.Connection, task_id: int) -> list[int]:
    """Pending tasks that depend on `task_id`."""
    rows = conn.execute(
        """SELECT d.task_id FROM deps d JOIN tasks t ON t.id = d.task_id
           WHERE d.depends_on = ? AND t.status = ? ORDER BY d.task_id""",
        (task_id, Status.PENDING),
    )
    return [r[0] for r in rows]


DEAD_ENDS = (Status.FAILED, Status.CANCELLED)  # until retried, whatever waits for these never runs


class Blocker(NamedTuple):
    """Why a pending task can never run as the queue stands: it waits for `waits_for`, which
    failed or was cancelled (`cause` is then the same task), or is itself blocked behind `cause`."""

    waits_for: int
    cause: int
    cause_status: str

    def __str__(self) -> str:
        verb = "failed" if self.cause_status == Status.FAILED else "was cancelled"
        if self.waits_for == self.cause:
            return f"it waits for {task_name(self.cause)}, which {verb}"
        return (
            f"it waits for {task_name(self.waits_for)}, which is blocked behind {task_name(self.cause)}, which {verb}"
        )


def blockers(conn: sqlite3.Connection) -> dict[int, Blocker]:
    """Each pending task that waits, directly or through other pending tasks, for one that failed
    or was cancelled: what it waits for, by task id."""
    deps: dict[int, list[tuple[int, str]]] = {}
    rows = conn.execute(
        """SELECT d.task_id, d.depends_on, p.status FROM deps d
           JOIN tasks t ON t.id = d.task_id JOIN tasks p ON p.id = d.depends_on
           WHERE t.status = ? ORDER BY d.task_id, d.depends_on""",
        (Status.PENDING,),
    )
    for task_id, dep, status in rows:
        deps.setdefault(task_id, []).append((dep, status))
    found: dict[int, Blocker | None] = {}
    for start in deps:  # depth first without recursion: a chain may be thousands long
        stack, opened = [start], set()
        while stack:
            task_id = stack[-1]
            if task_id in found:
                stack.pop()
            elif task_id not in opened:  # first its pending dependencies, then itself
                opened.add(task_id)
                stack += [d for d, status in deps.get(task_id, ()) if status == Status.PENDING and d not in found]
            else:
                found[task_id] = _blocker(deps.get(task_id, ()), found)
                stack.pop()
    return {task_id: why for task_id, why in found.items() if why}


def _blocker(deps: Sequence[tuple[int, str]], found: dict[int, Blocker | None]) -> Blocker | None:
    for dep, status in deps:
        if status in DEAD_ENDS:
            return Blocker(dep, dep, status)
    for dep, status in deps:
        if status == Status.PENDING and (behind := found.get(dep)):
            return Blocker(dep, behind.cause, behind.cause_status)
    return None


def unfinished(conn: sqlite3.Connection) -> list[tuple[Task, str]]:
    """Every task that is not completed, oldest first, with what became of it: what `run` reports
    once the queue is idle."""
    stuck, held = blockers(conn), paused(conn) is not None
    found = []
    for task in (
        task_from_row(r) for r in conn.execute(f"{SELECT_TASKS} WHERE t.status <> ? ORDER BY t.id", (Status.COMPLETED,))
    ):
        if task.status == Status.FAILED:
            tries = f"{task.attempts} attempt{'s' if task.attempts != 1 else ''}"
            why = f"failed after {tries}: {task.error or 'no error recorded'}"
        elif task.status == Status.CANCELLED:
            why = "was cancelled"
        elif task.id in stuck:
            why = f"will not run: {stuck[task.id]}"
        elif task.status == Status.PENDING and held:
            why = "did not run: the queue is paused (`orchestrate resume` lets it run)"
        elif task.status == Status.PENDING:
            why = "did not run: the head stopped before it could (see above)"
        else:
            why = "was left running by a head that stopped without recording it; `orchestrate start` recovers it"
        found.append((task, why))
    return found


class Head(NamedTuple):
    running: bool
    pid: int | None = None
    started_at: float | None = None
    heartbeat_at: float | None = None
    log_file: str | None = None
    unresponsive: bool = False  # its process lives and holds the queue's lock, but it does not beat
    stopped: bool = False  # and its process is stopped (SIGSTOP, or a debugger)

    @property
    def problem(self) -> str | None:
        """What is wrong with an unresponsive head, and what to do about it, in one sentence."""
        if not self.unresponsive:
            return None
        why = " (its process is stopped)" if self.stopped else ""
        silent = max(time.time() - (self.heartbeat_at or 0), 0)
        return (
            f"head {self.pid} holds the queue's lock but has not beaten for {silent:.0f} s{why};"
            f" `kill -CONT {self.pid}` resumes it if it was stopped, or `kill -9 {self.pid}`"
            " then `orchestrate start` replaces it"
        )


def _state(pid: int) -> bytes | None:
    """The process state letter of `pid` (R, S, T...); None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None
    return None if state == b"Z" else state


def alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (exited, not yet reaped) counts as gone."""
    return _state(pid) is not None


def holds_lock(pid: int, path: str) -> bool:
    """Whether `pid` holds an exclusive flock on the file at `path`, as a head holds its queue's
    (read from /proc/locks, so that looking never takes the lock a starting head needs)."""
    try:
        st = os.stat(path)
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return False
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in lines:  # "3: FLOCK  ADVISORY  WRITE 7740 fe:00:2147847 0 EOF"; waiters have "->"
        fields = line.split()
        if fields[1:6] == ["FLOCK", "ADVISORY", "WRITE", str(pid), where]:
            return True
    return False


def head(conn: sqlite3.Connection, now: float | None = None) -> Head:
    """The head node as the queue knows it: running only if its pid lives and it beats;
    unresponsive if its process holds the queue's lock but is stopped or has not beaten."""
    row = conn.execute("SELECT pid, host, started_at, heartbeat_at, log_file FROM head").fetchone()
    if row is None:
        return Head(running=False)
    now = time.time() if now is None else now
    state = _state(row["pid"]) if row["host"] == os.uname().nodename else None
    stopped = state in (b"T", b"t")
    live = state is not None and now - row["heartbeat_at"] < HEARTBEAT_STALE_S and not stopped
    found = Head(live, row["pid"], row["started_at"], row["heartbeat_at"], row["log_file"])
    if state is None or live:
        return found
    database = conn.execute("PRAGMA database_list").fetchone()[2]  # '' for a queue not yet created
    frozen = bool(database) and holds_lock(row["pid"], database)
    return found._replace(unresponsive=frozen, stopped=stopped and frozen)


class Slot(NamedTuple):
    id: str
    type: str
    state: str
    task_id: int | None
    pid: int | None
    rss_mb: float | None
    tasks_done: int
    cost_usd: float
    since: float | None
    note: str | None


def slots(conn: sqlite3.Connection) -> list[Slot]:
    """The head's agent slots, as it last reported them."""
    rows = conn.execute(f"SELECT {', '.join(Slot._fields)} FROM agents ORDER BY rowid")
    return [Slot(**dict(r)) for r in rows]
