"""Benchmarks for DESIGN's performance budget; prints a Markdown table for the README.

    python bench/run.py [--runs 21] [--rounds 3] [--pickups 20] [--tasks 1000] [--claims 200]
                        [--queued 100000] [--only SECTION,...] [--no-wait] [--quick]

Whole-process wall times are medians of runs taken alternately with their baseline (client
start-up with `python -c "import typer, yaml, sqlite3"`, throughput with `xargs -P5`), so machine
noise hits both alike. Pickup latency and the head's memory are measured against a head started
with `orchestrate start` in a throwaway project, stopped again whatever happens.

Beside SQLite's rows, the same measurements on PostgreSQL: Debian's server, started as the tests
start it (tests/postgres_server.py: a temporary directory, a Unix socket, fsync=off, so no commit
waits for the disk), stopped at the end. Without psycopg or an installed server, those rows say
they were skipped, and why. They have no budget ("reported"), but for the claim's:

- client start-up: `orchestrate add` and `status` with $ORCHESTRATE_DATABASE set, on databases
  of 10,000 and 100,000 tasks filled as the SQLite queues are, in the same alternation as
  SQLite's rows, against the same floor;
- throughput: 1,000 `true` tasks, each `workspace: shared` (run in the project directory, not a
  worktree), queued with `orchestrate add --file` and worked by 1, 2 and 4 heads, each started
  with `orchestrate start` in a project of its own (a git repository with one commit, a config
  with `workspace: worktree` and a `head_name`), 5 slots in total split across them; timed from
  launching the heads to the last task's finish (the add is reported, not counted), in the same
  rounds as xargs and `orchestrate run`. A shared task in a git repository is still snapshotted
  with git before and after its agent (workspace/changes.py), which `orchestrate run`'s project
  (no repository) is not, so a row of the same harness on SQLite (one head) stands beside them;
- claim latency: one `claim` as the head makes it (core/queue.py's Queue, postgres/queue.py's
  PostgresQueue, in this process, one connection throughout) with 100,000 pending tasks, on both
  engines (issue 17: under 1 ms on PostgreSQL); then, once every pending task waits on a running
  one, a quarter as many claims that find nothing, to show whether a claim visits the rows it
  cannot take.

Sections (for --only), in the table's order: client, throughput, claims, context, pickup, memory.
A quick look at the PostgreSQL rows (under a minute here):

    python bench/run.py --quick --only client,throughput,claims --tasks 50 --runs 3 --no-wait
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import contextlib
import importlib
import importlib.util
import itertools
import json
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple, Protocol, TypeVar, cast

import orchestrate
from orchestrate import api, configfile, context
from orchestrate.core import process, store
from orchestrate.core.queue import Queue

BIN = Path(sys.executable).parent
EXE = str(BIN / "orchestrate")
FLOOR = [sys.executable, "-c", "import typer, yaml, sqlite3"]
# Bytecode is written as a normal install would; a PYTHONDONTWRITEBYTECODE shell would
# otherwise make every run recompile the package and measure the compiler. No ORCHESTRATE_
# variable of the shell's (a queue, a configuration, a parent task) reaches the commands.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE" and not k.startswith("ORCHESTRATE_")}
HUEY_AIM = 3.3  # SqliteHuey, 5 workers, the same 1,000 tasks, against xargs on this machine
# The recording agent: an absolute interpreter without site (no pyenv shim, no .pth files), so
# the time it writes is as close to its exec as Python gets; `calibrate` measures the rest.
STAMP = "import os, sys, time; t = time.time(); open(sys.argv[1], 'a').write(f\"{os.environ['ORCHESTRATE_TASK']} {t!r}\\n\")"
QUIET_FILE_S = 0.00005  # an idle disk here creates an empty file in 0.02-0.03 ms
POLL_S = 0.005  # polling interval while waiting on the head; measurements use timestamps, not polls
TESTS = Path(__file__).resolve().parent.parent / "tests"  # postgres_server.py: the tests' PostgreSQL server
SLOTS = 5  # the throughput rows' slots: xargs -P5's processes, in total however many heads share them
HEADS = (1, 2, 4)  # heads on one PostgreSQL queue, in the throughput rows
CLAIM_BUDGET_S = 0.001  # issue 17: one claim with 100,000 tasks queued
# Pending tasks in one statement on either engine, each the row api._insert writes for a plain
# `orchestrate add` (no agent, timeout, workspace or checks), priorities mixed as fill() has them.
INSERT_PENDING = """INSERT INTO tasks (description, priority, rank, max_retries, context_files, created_at)
    WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
    SELECT 'task ' || i || ': refactor module ' || (i % 97), i % 3, i % 3, 3, '[]', ? FROM n"""
# Every pending task waits on the task given (a running one): nothing is claimable.
BLOCK_PENDING = "INSERT INTO deps (task_id, depends_on) SELECT id, ? FROM tasks WHERE status = 'pending'"
DATABASES = itertools.count(1)  # the benchmark's PostgreSQL databases, each new

T = TypeVar("T")


class Row(NamedTuple):
    name: str
    median: str
    budget: str
    ok: bool


def ms(seconds: float, digits: int = 1) -> str:
    return f"{seconds * 1000:.{digits}f} ms"


def one_line(exc: BaseException) -> str:
    """An exception as one line of the table."""
    return " ".join(f"{type(exc).__name__}: {exc}".split()).replace("|", "\\|")


def guarded(what: str, measure: Callable[[], T]) -> T | Row:
    """What `measure` gives; or, when it raises, a failed row saying why (the traceback on stderr),
    so that one broken measurement does not hide the others."""
    try:
        return measure()
    except Exception as exc:
        traceback.print_exc()
        return Row(f"{what}: failed", "-", one_line(exc), False)


def xargs(n: int) -> list[str]:
    """The throughput baseline: `n` `true` processes, 5 at a time."""
    return ["sh", "-c", f"seq {n} | xargs -P{SLOTS} -I{{}} true"]


class Postgres(Protocol):
    """tests/postgres_server.py's Server, as far as the benchmark uses it."""

    bin: Path

    def create(self, database: str) -> str: ...


class Pg(NamedTuple):
    """The PostgreSQL server of the PostgreSQL rows, or why there is none (which they print instead)."""

    server: Postgres | None
    why: str = ""

    def database(self) -> str:
        """The URL of a new, empty database."""
        assert self.server is not None
        return self.server.create(f"bench_{next(DATABASES)}")

    def skipped(self, rows: str) -> Row:
        return Row(f"{rows} on PostgreSQL: skipped", "-", f"skipped: {self.why}", True)

    def version(self) -> str:
        if self.server is None:
            return ""
        found = subprocess.run([str(self.server.bin / "postgres"), "--version"], capture_output=True, text=True)
        said = re.search(r"\(PostgreSQL\) (\S+)", found.stdout)  # postgres (PostgreSQL) 15.18 (Debian ...)
        return f", PostgreSQL {said[1] if said else '?'} (fsync=off)"


@contextlib.contextmanager
def postgres() -> Iterator[Pg]:
    """A PostgreSQL server started as the tests start theirs (tests/postgres_server.py: Debian's
    binaries, a temporary directory, a Unix socket), stopped and removed on the way out; or why not."""
    if importlib.util.find_spec("psycopg") is None:
        yield Pg(None, "psycopg is not installed (pip install 'orchestrate[postgres]')")
        return
    sys.path.insert(0, str(TESTS))
    try:
        module = importlib.import_module("postgres_server")
    finally:
        sys.path.remove(str(TESTS))
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(module.running())
        except Exception as exc:  # initdb or pg_ctl failed
            yield Pg(None, f"the PostgreSQL server would not start ({' '.join(str(exc).split())})")
            return
        if server is None:
            yield Pg(None, "no PostgreSQL server is installed (Debian's postgresql package: /usr/lib/postgresql/*/bin)")
            return
        yield Pg(server)


def pg_connection(url: str) -> Any:
    """orchestrate's connection to the database at `url` (its schema migrated on the way)."""
    from orchestrate import postgres

    return postgres.Connection(postgres.Settings(url, "bench"))


def settle(conn: Any) -> None:
    """A quarter of the tasks completed and one in 97 failed, as in a long-lived project."""
    conn.execute("UPDATE tasks SET status = 'completed' WHERE id % 4 = 0")
    conn.execute("UPDATE tasks SET status = 'failed', error = 'exit 1' WHERE id % 97 = 0")


def fill(db: Path, n: int) -> None:
    """A queue of `n` tasks across priorities and states, as a long-lived project has."""
    batch = [api.NewTask(description=f"task {i}: refactor module {i % 97}", priority=i % 3) for i in range(n)]
    with api.opened(db) as conn:
        api.add_tasks(conn, batch)
        settle(conn)


def pg_fill(url: str, n: int, settled: bool = True) -> None:
    """fill()'s queue in a PostgreSQL database, vacuumed and analysed as autovacuum leaves a
    long-lived one. Inserted in one statement (a round trip per task would take minutes) with the
    triggers off, then counted: task_counts' row trigger makes one statement's inserts quadratic
    (each finds the counts row at the end of a chain of its versions: 100,000 take over a minute)."""
    conn = pg_connection(url)
    try:
        conn.execute("SET session_replication_role = replica")  # no triggers: the server's user is a superuser
        conn.execute(INSERT_PENDING, (n - 1, time.time()))
        if settled:
            settle(conn)
        conn.execute("RESET session_replication_role")
        conn.execute("UPDATE task_counts c SET n = (SELECT count(*) FROM tasks t WHERE t.status = c.status)")
        conn.execute("VACUUM ANALYZE")
    finally:
        conn.close()


def timed(argv: Sequence[str], cwd: Path, env: Mapping[str, str] = ENV) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


class Command(NamedTuple):
    """A command run somewhere else than the others, or with more in its environment."""

    argv: list[str]
    cwd: Path
    env: dict[str, str]


def alternate(commands: Mapping[str, list[str] | Command], cwd: Path, runs: int) -> dict[str, float]:
    """Median seconds of each command, run in turn so that drift affects all of them."""

    def run(command: list[str] | Command) -> float:
        return timed(command.argv, command.cwd, command.env) if isinstance(command, Command) else timed(command, cwd)

    samples: dict[str, list[float]] = {name: [] for name in commands}
    for command in commands.values():
        run(command)  # warm the page cache and the bytecode
    for _ in range(runs):
        for name, command in commands.items():
            samples[name].append(run(command))
    return {name: statistics.median(values) for name, values in samples.items()}


def pg_commands(root: Path, pg: Pg) -> dict[str, Command]:
    """The PostgreSQL rows' commands, each tried once: a project in worktree mode (as a PostgreSQL
    queue needs) and $ORCHESTRATE_DATABASE naming a database filled as fill() fills a queue file."""
    root.mkdir()
    (root / "config.yaml").write_text(json.dumps({"workspace": "worktree"}), encoding="utf-8")
    env = {}
    for n in (10_000, 100_000):
        env[n] = {**ENV, "ORCHESTRATE_DATABASE": pg.database()}
        pg_fill(env[n]["ORCHESTRATE_DATABASE"], n)
    commands = {
        "add (10k queued)": Command([EXE, "add", "Write the changelog"], root, env[10_000]),
        "status (10k queued)": Command([EXE, "status"], root, env[10_000]),
        "status (100k queued)": Command([EXE, "status"], root, env[100_000]),
    }
    for name, command in commands.items():
        done = subprocess.run(command.argv, cwd=root, env=command.env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"orchestrate {name} exited {done.returncode}: {' '.join(done.stderr.split()[-30:])}")
    return commands


def client_rows(runs: int, pg: Pg) -> list[Row]:
    """The commands' start-up against the floor; on PostgreSQL too, in the same alternation."""
    rows = []
    on_pg = " on PostgreSQL"
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        fill(cwd / "q10k.db", 10_000)
        fill(cwd / "q100k.db", 100_000)
        commands: dict[str, list[str] | Command] = {
            "floor": FLOOR,
            "add (10k queued)": [EXE, "--db", "q10k.db", "add", "Write the changelog"],
            "status (10k queued)": [EXE, "--db", "q10k.db", "status"],
            "status (100k queued)": [EXE, "--db", "q100k.db", "status"],
        }
        missing: list[Row] = []  # the PostgreSQL rows, when they cannot be had
        if pg.server is None:
            missing.append(pg.skipped("`orchestrate add` and `status`"))
        else:
            shared = guarded(f"`orchestrate add` and `status`{on_pg}", partial(pg_commands, cwd / "pg", pg))
            if isinstance(shared, Row):
                missing.append(shared)
            else:
                commands |= {f"{name}{on_pg}": command for name, command in shared.items()}
        medians = alternate(commands, cwd, runs)
    floor = medians.pop("floor")
    rows.append(Row('`python -c "import typer, yaml, sqlite3"` (floor)', ms(floor), "-", True))
    for name, value in medians.items():
        if name.endswith(on_pg):
            sqlite_ratio = medians[name.removesuffix(on_pg)] / floor
            budget = f"reported: {value / floor:.2f}x floor (SQLite's {sqlite_ratio:.2f}x); $ORCHESTRATE_DATABASE set"
            rows.append(Row(f"`orchestrate {name.removesuffix(on_pg)}`{on_pg}", ms(value), budget, True))
            continue
        ok = value <= 1.25 * floor and value < 0.100
        rows.append(Row(f"`orchestrate {name}`", ms(value), f"{value / floor:.2f}x floor (<= 1.25x, < 100 ms)", ok))
    return rows + missing


def project(root: Path, agents: dict[str, Any]) -> Path:
    """A project directory whose config.yaml has these agents (JSON is YAML); its root."""
    (root / "config.yaml").write_text(json.dumps({"agents": agents}), encoding="utf-8")
    return root


def orchestrate_run(n: int, root: Path) -> float:
    """Wall seconds of `orchestrate run` working `n` queued `true` tasks on 5 slots, in a new `root`."""
    root.mkdir()
    project(root, {"t": {"type": "command", "command": ["true"], "max_instances": 5}})
    with api.opened(root / "tasks.db") as conn:
        api.add_tasks(conn, [api.NewTask(description=f"task {i}") for i in range(n)])
    start = time.perf_counter()
    done = subprocess.run([EXE, "run"], cwd=root, env=ENV, capture_output=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"orchestrate run exited {done.returncode}: {' | '.join(tail)}")
    with api.opened(root / "tasks.db") as conn:
        completed = api.counts(conn)["completed"]
    if completed != n:
        raise RuntimeError(f"orchestrate run completed {completed} of {n} tasks")
    return wall


def file_creation_s(where: Path, n: int = 200) -> float:
    """Seconds per new file in `where` (the files stay: deleting them would slow the next ones).

    Reported beside the throughput because it swings it: for minutes after thousands of files
    are deleted (by a test run, or an earlier benchmark), ext4 makes each new file scan the
    recently freed inodes (`recently_deleted` tops a perf profile), and the head creates two
    files per task. An idle disk here takes 0.02-0.03 ms.
    """
    where.mkdir()
    start = time.perf_counter()
    for i in range(n):
        (where / str(i)).write_bytes(b"")
    return (time.perf_counter() - start) / n


def quiet_disk(where: Path, limit_s: float = 600) -> str:
    """Wait until a new file costs what it does on an idle disk (file_creation_s says why); say how long.

    The probes stay until the caller's directory goes, so they do not prolong what they wait out.
    """
    start = time.monotonic()
    for probe in range(10**6):
        if file_creation_s(where / f"probe-{probe}", 500) < QUIET_FILE_S or time.monotonic() - start > limit_s:
            return f"; waited {time.monotonic() - start:.0f} s for a quiet disk" if probe else ""
        time.sleep(15)  # waiting out the kernel, not synchronising with anything of ours
    return ""


def repository(where: Path) -> Path:
    """A new git repository at `where` with one commit (its .gitignore, which leaves config.yaml out)."""
    where.mkdir()
    (where / ".gitignore").write_text("config.yaml\n", encoding="utf-8")
    for argv in (["init", "-q"], ["add", ".gitignore"], ["commit", "-qm", "start"]):
        identity = ["-c", "user.name=bench", "-c", "user.email=bench@localhost"]
        subprocess.run(["git", *identity, *argv], cwd=where, env=ENV, capture_output=True, check=True)
    return where


def split(slots: int, heads: int) -> list[int]:
    """`slots` shared out over `heads` as evenly as they go: 5 over 2 is 3 + 2, over 4 is 2 + 1 + 1 + 1."""
    return [slots // heads + (i < slots % heads) for i in range(heads)]


class Worked(NamedTuple):
    wall: float  # from launching the heads to the last task's finish
    add: float  # `orchestrate add --file` queueing the tasks, before
    shares: list[int]  # the tasks each head ran


def heads_run(n: int, root: Path, slots: Sequence[int], url: str | None) -> Worked:
    """`n` `true` tasks (`workspace: shared`) queued with `orchestrate add --file` and worked by a
    head in each of len(`slots`) projects (git repositories in worktree mode, `slots[i]` slots each),
    on the PostgreSQL database at `url`, or with one project, on its SQLite queue."""
    root.mkdir()
    roots = []
    for i, count in enumerate(slots, 1):
        where = repository(root / f"m{i}")
        queue = {"database": url, "head_name": f"m{i}"} if url else {}
        agents = {"t": {"type": "command", "command": ["true"], "max_instances": count}}
        config = {"agents": agents, "workspace": "worktree", "task_queue": queue}
        (where / "config.yaml").write_text(json.dumps(config), encoding="utf-8")
        roots.append(where)
    tasks = root / "tasks.yaml"  # JSON is YAML
    tasks.write_text(json.dumps([{"description": f"task {i}", "workspace": "shared"} for i in range(n)]))
    add = timed([EXE, "add", "--file", str(tasks)], roots[0])
    with api.queue_of(configfile.load(roots[0] / "config.yaml")) as conn:
        start = time.time()  # the heads' own clocks write finished_at
        with running_heads(roots) as pids:
            deadline = time.monotonic() + 60 + n * 0.5
            while (counts := api.counts(conn))["completed"] < n:
                if counts["failed"] or counts["cancelled"]:
                    why = conn.execute("SELECT error FROM tasks WHERE status = 'failed' LIMIT 1").fetchone()
                    raise RuntimeError(f"{counts['failed']} failed, {counts['cancelled']} cancelled: {why and why[0]}")
                if dead := [pid for pid in pids if not api.alive(pid)]:
                    raise RuntimeError(f"head(s) {dead} exited with {counts['completed']} of {n} tasks completed")
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{counts['completed']} of {n} tasks completed in {time.monotonic() - start:.0f} s"
                    )
                time.sleep(0.05)  # the time taken comes from the rows, not from this poll
        last = conn.execute("SELECT max(finished_at) FROM tasks").fetchone()[0]
        by_head = dict(conn.execute("SELECT head, count(*) FROM runs GROUP BY head")) if url else {"m1": n}
    return Worked(last - start, add, [int(by_head.get(root.name, 0)) for root in roots])  # runs.head: PostgreSQL's


def throughput_rows(rounds: int, n: int, pg: Pg, wait: bool = True) -> list[Row]:
    """`orchestrate run` against xargs; in the same rounds, the PostgreSQL heads' harness on
    SQLite (one head) and on PostgreSQL (1, 2 and 4 heads). A harness that fails is reported so,
    without losing the other rows."""
    xargs_s: list[float] = []
    runs: list[float] = []
    harness: dict[int, list[Worked]] = {heads: [] for heads in (0, *(HEADS if pg.server else ()))}  # 0: SQLite
    broken: dict[int, str] = {}
    # Every round's files are kept until the end, for the reason file_creation_s gives.
    with tempfile.TemporaryDirectory() as tmp:
        waited = quiet_disk(Path(tmp)) if wait else "; did not wait for a quiet disk (--no-wait)"
        create = file_creation_s(Path(tmp) / "probe")
        timed(xargs(n), Path(tmp))  # warm up both, as `alternate` does
        orchestrate_run(50, Path(tmp) / "warm-up")
        for heads in harness:  # and git, psycopg and the server
            url = pg.database() if heads else None
            warm = guarded(
                "", partial(heads_run, 20, Path(tmp) / f"warm-up-heads-{heads}", split(SLOTS, heads or 1), url)
            )
            if isinstance(warm, Row):
                broken[heads] = warm.budget
        for i in range(rounds):
            xargs_s.append(timed(xargs(n), Path(tmp)))
            runs.append(orchestrate_run(n, Path(tmp) / f"round-{i}"))
            for heads, done in harness.items():
                if heads in broken:
                    continue
                url = pg.database() if heads else None
                where = Path(tmp) / f"round-{i}-heads-{heads}"
                worked = guarded("", partial(heads_run, n, where, split(SLOTS, heads or 1), url))
                if isinstance(worked, Row):
                    broken[heads] = worked.budget
                else:
                    done.append(worked)
    base, ours = statistics.median(xargs_s), statistics.median(runs)
    ratio = ours / base
    rows = [
        Row(rf"`seq {n} \| xargs -P{SLOTS} -I{{}} true` (baseline)", ms(base), "-", True),
        Row(
            f"`orchestrate run`: {n:,} `true` tasks, {SLOTS} slots",
            ms(ours),
            f"{ratio:.2f}x xargs (<= 4x; aim ~{HUEY_AIM}x, Huey's); a new file took {create * 1000:.2f} ms{waited}",
            ratio <= 4.0,
        ),
    ]
    walls = {heads: statistics.median(w.wall for w in done) for heads, done in harness.items() if heads not in broken}
    for heads, done in harness.items():
        if not heads:
            name = (
                f"`orchestrate start`, 1 head on SQLite: {n:,} `true` tasks `--workspace shared` in a git repository"
                f" (worktree config), {SLOTS} slots"
            )
        else:
            slots = f" ({'+'.join(map(str, split(SLOTS, heads)))})" if heads > 1 else ""
            name = (
                f"`orchestrate start`, {heads} head{'s' if heads > 1 else ''} on PostgreSQL: the same {n:,} tasks,"
                f" {SLOTS} slots in total{slots}"
            )
        if heads in broken:
            rows.append(Row(name, "-", f"failed: {broken[heads]}", False))
            continue
        wall, add = walls[heads], statistics.median(w.add for w in done)
        counted = f"`add --file` took {ms(add)} before, not counted"
        if not heads:
            budget = (
                f"reported: {wall / base:.2f}x xargs; the PostgreSQL rows' harness, on SQLite: from launching the"
                " head to the last finish, with each task's git snapshots of the project (workspace/changes.py),"
                f" which `orchestrate run`'s project (no repository) has not; {counted}"
            )
            rows.append(Row(name, ms(wall), budget, True))
            continue
        shares = " / ".join(f"{statistics.median(w.shares[i] for w in done):g}" for i in range(heads))
        beside = f", {wall / walls[0]:.2f}x SQLite's in the same harness" if 0 in walls else ""
        budget = (
            f"reported: {wall / base:.2f}x xargs{beside} (git snapshots included, as there); from launching the"
            f" heads to the last finish; tasks per head {shares}; {counted}"
        )
        rows.append(Row(name, ms(wall), budget, True))
    if not pg.server:
        rows.append(pg.skipped(f"`orchestrate start` with {', '.join(map(str, HEADS))} heads"))
    return rows


async def claim_times(queue: Queue, times: int, claimable: bool) -> list[float]:
    """Seconds each of `times` claims takes, as the head makes it (slot t-1 of a command agent t)."""
    samples = []
    for _ in range(times):
        now = time.time()
        start = time.perf_counter()
        task = await queue.claim("t-1", ("t", "command"), ("t",), now, ())
        samples.append(time.perf_counter() - start)
        if (task is not None) != claimable:
            raise RuntimeError(f"a claim took {task.name}" if task else "a claim found nothing to take")
    return samples


class Claims(NamedTuple):
    takes: list[float]  # seconds of each claim that took a task
    finds_nothing: list[float]  # and of each that found nothing it could take


async def claims_on(opened: Callable[[], Queue], times: int, blocked: int, block: Callable[[int], None]) -> Claims:
    """`times` claims that each take a task; then, once `block` has made every pending task wait
    on a running one, `blocked` claims that find nothing. One queue throughout, as a head keeps its
    connection (and psycopg its prepared statements)."""
    queue = opened()
    try:
        first = await queue.claim("t-1", ("t", "command"), ("t",), time.time(), ())  # a warm-up, not timed
        assert first is not None, "nothing to claim"
        takes = await claim_times(queue, times, True)
        block(first.id)
        return Claims(takes, await claim_times(queue, blocked, False))
    finally:
        await queue.close()


def sqlite_claims(root: Path, claims: int, blocked: int, queued: int) -> Claims:
    db = root / "claims.db"
    with api.opened(db) as conn:
        conn.execute(INSERT_PENDING, (queued - 1, time.time()))

    def block(task_id: int) -> None:
        with api.opened(db) as conn:
            conn.execute(BLOCK_PENDING, (task_id,))

    return asyncio.run(claims_on(partial(Queue, db), claims, blocked, block))


def pg_claims(root: Path, claims: int, blocked: int, queued: int, url: str) -> Claims:
    from orchestrate.postgres import Settings
    from orchestrate.postgres.queue import PostgresQueue

    pg_fill(url, queued, settled=False)
    head = cast(Any, SimpleNamespace(busy={}))  # the queue reads only the head's busy slots

    def block(task_id: int) -> None:
        conn = pg_connection(url)
        try:
            conn.execute(BLOCK_PENDING, (task_id,))
            conn.execute("VACUUM ANALYZE")  # as autovacuum would soon: the plans see the deps
        finally:
            conn.close()

    def opened() -> Queue:
        return PostgresQueue(Settings(url, "bench"), head, root / "postgres.lock")

    return asyncio.run(claims_on(opened, claims, blocked, block))


def claim_rows(claims: int, queued: int, pg: Pg) -> list[Row]:
    """One claim's time with `queued` pending tasks, in this process as the head makes it (one
    transaction: BEGIN, the claim's UPDATE ... RETURNING, COMMIT); and once all of them wait on a
    running task, so that the claim finds nothing (fewer of those: each visits every waiting row)."""
    blocked = max(5, claims // 4)
    found: dict[str, Claims | Row] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if pg.server is not None:
            url = pg.database()
            found["PostgreSQL"] = guarded(
                f"one claim, {queued:,} tasks pending (PostgreSQL)",
                partial(pg_claims, Path(tmp), claims, blocked, queued, url),
            )
        found["SQLite"] = guarded(
            f"one claim, {queued:,} tasks pending (SQLite)", partial(sqlite_claims, Path(tmp), claims, blocked, queued)
        )

    def spread(samples: list[float]) -> str:
        p90 = f", p90 {ms(statistics.quantiles(samples, n=10)[-1], 3)}" if len(samples) > 1 else ""
        return f"n={len(samples)}{p90}"

    rows = [got for got in found.values() if isinstance(got, Row)]
    measured = {engine: got for engine, got in found.items() if not isinstance(got, Row)}
    for engine, got in measured.items():
        took, name = statistics.median(got.takes), f"one claim, {queued:,} tasks pending ({engine})"
        if engine == "PostgreSQL":
            budget = f"< {ms(CLAIM_BUDGET_S, 0)} (issue 17); in-process, over a Unix socket ({spread(got.takes)})"
            rows.append(Row(name, ms(took, 3), budget, took < CLAIM_BUDGET_S))
        else:
            rows.append(Row(name, ms(took, 3), f"reported, beside PostgreSQL's ({spread(got.takes)})", True))
    for engine, got in measured.items():
        took, none = statistics.median(got.takes), statistics.median(got.finds_nothing)
        name = f"one claim that finds nothing: the {queued:,} pending all wait on a running task ({engine})"
        budget = f"reported: {none / took:.0f}x the claim that takes one ({spread(got.finds_nothing)})"
        rows.append(Row(name, ms(none, 3), budget, True))
    if pg.server is None:
        rows.append(pg.skipped(f"one claim with {queued:,} tasks pending"))
    return rows


def context_run(done: int, n: int, root: Path) -> tuple[float, float]:
    """After `done` completed tasks, run `n` more: seconds per task (first start to last finish),
    and the seconds one rewrite of completed_tasks.json and current_state.md takes at that size."""
    root.mkdir()
    project(root, {"t": {"type": "command", "command": ["true"], "max_instances": 5}})
    with api.opened(root / "tasks.db") as conn:
        api.add_tasks(conn, [api.NewTask(f"done {i}") for i in range(done)])
        conn.execute(
            """UPDATE tasks SET status = 'completed', agent = 't-1', attempts = 1, started_at = 1,
               finished_at = 2, output_file = 'context/agent_outputs/task_' || id || '_output.md'"""
        )
        api.add_tasks(conn, [api.NewTask(f"new {i}") for i in range(n)])
    done_run = subprocess.run([EXE, "run"], cwd=root, env=ENV, capture_output=True, check=False)
    if done_run.returncode != 0:
        raise RuntimeError(f"orchestrate run exited {done_run.returncode}")
    with api.opened(root / "tasks.db") as conn:
        span = "SELECT min(started_at), max(finished_at) FROM tasks WHERE id > ?"
        first, last = conn.execute(span, (done,)).fetchone()
        rows = conn.execute(f"{store.SELECT_TASKS} WHERE t.status = 'completed'")
        tasks = [store.task_from_row(r) for r in rows]
    lines = [context.Line(t.id, t.description, t.status, t.agent, t.output_file, "Done.") for t in tasks[-20:]]

    async def block() -> str:
        return context.state_block(lines, {"completed": len(tasks)})

    async def rewrites(times: int) -> float:
        keeper = context.Journal(configfile.load(root / "config.yaml"))
        keeper.block, keeper.trouble = block, lambda problem: print(problem)  # type: ignore[method-assign]
        keeper.entries.update({t.id: context.entry(t) for t in tasks})
        start = time.perf_counter()
        for _ in range(times):
            keeper.stale.set()
            await keeper.publish()
        return (time.perf_counter() - start) / times

    return (last - first) / n, asyncio.run(rewrites(20))


def context_rows(rounds: int, n: int = 300, wait: bool = True) -> list[Row]:
    samples: dict[int, list[tuple[float, float]]] = {10: [], 10_000: []}
    with tempfile.TemporaryDirectory() as tmp:  # kept to the end, as in throughput_rows
        if wait:
            quiet_disk(Path(tmp))
        for i in range(rounds):
            for done in samples:
                samples[done].append(context_run(done, n, Path(tmp) / f"after-{done}-{i}"))
    (few, few_rewrite), (many, many_rewrite) = (
        (statistics.median(s[0] for s in runs), statistics.median(s[1] for s in runs)) for runs in samples.values()
    )
    ratio = many / few
    return [
        Row(
            f"per task, {n} `true` tasks after 10 / 10,000 completed (context updates on)",
            f"{ms(few)} / {ms(many)}",
            f"{ratio:.2f}x (no slower with 10,000: <= 1.1x)",
            ratio <= 1.1,
        ),
        Row(
            "one rewrite of completed_tasks.json + current_state.md, 10 / 10,000 entries",
            f"{ms(few_rewrite)} / {ms(many_rewrite)}",
            f"at most one per {context.PUBLISH_S:g} s, however many tasks finish meanwhile",
            True,
        ),
    ]


def wait_for(what: str, check: Callable[[], T | None], timeout: float) -> T:
    """Poll `check` until it gives something other than None, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while (found := check()) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(POLL_S)
    return found


def cli(root: Path, *args: str) -> str:
    done = subprocess.run([EXE, *args], cwd=root, env=ENV, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = [line for line in done.stderr.splitlines() if line.strip()][-1:]
        raise RuntimeError(f"orchestrate {' '.join(args)} exited {done.returncode}: {' '.join(last)}")
    return done.stdout


def stop_head(root: Path, pid: int | None, queue: Path) -> None:
    """Stop the head of `root` (`pid`), and kill whatever its agents left behind on `queue`."""
    with contextlib.suppress(RuntimeError):
        cli(root, "stop")
    if pid is not None and api.alive(pid):  # `stop` failed: end the head ourselves
        os.kill(pid, signal.SIGKILL)
        print(f"warning: head {pid} outlived `orchestrate stop`; killed", file=sys.stderr)
    # Whatever its agents left behind carries the queue in its environment.
    left = process.strays(str(queue.resolve()))
    pids = [p for procs in left.values() for p, _ in procs]
    if pids:
        print(f"warning: {len(pids)} agent process(es) outlived the head; killed", file=sys.stderr)
        for stray in pids:
            process.send_signal(stray, signal.SIGKILL, group=False)


@contextlib.contextmanager
def running_head(root: Path) -> Iterator[int]:
    """A head started with `orchestrate start` in `root`; stopped, with every agent, on the way out."""
    cli(root, "start")
    pid: int | None = None
    try:
        pid = int(json.loads(cli(root, "status", "--json"))["head"]["pid"])
        yield pid
    finally:
        stop_head(root, pid, root / "tasks.db")


@contextlib.contextmanager
def running_heads(roots: Sequence[Path]) -> Iterator[list[int]]:
    """A head in each of `roots`, launched at once with `orchestrate start` (as machines would):
    their pids; each stopped, with every agent, on the way out."""
    starting = [
        subprocess.Popen([EXE, "start"], cwd=root, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for root in roots
    ]
    pids: dict[Path, int | None] = {}
    try:
        failed = []
        for root, start in zip(roots, starting, strict=True):
            out, err = start.communicate()
            if start.returncode != 0:
                failed.append(
                    f"{root.name}: `orchestrate start` exited {start.returncode}: {' '.join(err.split()[-30:])}"
                )
                continue
            pids[root] = None  # started: stopped on the way out whatever follows
            said = re.search(r"pid (\d+)", out)  # "head running, pid N; ...": no second command while timed
            pids[root] = int(said[1]) if said else int(json.loads(cli(root, "status", "--json"))["head"]["pid"])
        if failed:
            raise RuntimeError("; ".join(failed))
        yield [pid for pid in pids.values() if pid is not None]
    finally:
        for root, pid in pids.items():
            cfg = configfile.load(root / "config.yaml")
            stop_head(root, pid, root / cfg.task_queue.database)


def calibrate(stamps: Path, times: int = 10) -> float:
    """Median seconds from launching the recording agent to the time it writes."""
    delays = []
    env = {**ENV, process.TASK_VAR: "calibration"}
    for _ in range(times):
        stamps.unlink(missing_ok=True)
        before = time.time()
        subprocess.run([sys.executable, "-I", "-S", "-c", STAMP, str(stamps)], env=env, check=True)
        delays.append(float(stamps.read_text().split()[1]) - before)
    stamps.unlink()
    return statistics.median(delays)


def pickup_rows(pickups: int) -> list[Row]:
    """From `orchestrate add` committing (its process returning) to the agent starting, on an idle head."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp).resolve()
        stamps = root / "starts.txt"
        offset = calibrate(stamps)
        command = [sys.executable, "-I", "-S", "-c", STAMP, str(stamps)]
        project(root, {"stamp": {"type": "command", "command": command, "max_instances": 1}})

        def started(task: str) -> float | None:
            lines = stamps.read_text().splitlines() if stamps.exists() else []
            return next((float(t) for name, t in map(str.split, lines) if name == task), None)

        def finished(task: str) -> store.Task | None:
            with api.opened(root / "tasks.db") as conn:
                found = api.get_task(conn, api.parse_task_id(task))
            return found if found.status not in ("pending", "running") else None

        from_commit: list[float] = []
        from_launch: list[float] = []
        from_insert: list[float] = []
        with running_head(root):
            for i in range(pickups):
                launched = time.time()
                task = cli(root, "add", f"pickup {i}").strip()
                committed = time.time()
                start = wait_for(f"{task}'s agent to start", partial(started, task), 10.0)
                from_commit.append(start - committed)
                from_launch.append(start - launched)
                # created_at is taken just before the insert's transaction: commit lies between it
                # and the add's return, so these two bracket the true latency
                done = wait_for(f"{task} to finish", partial(finished, task), 10.0)  # idle again
                from_insert.append(start - done.created_at)
    median = statistics.median(from_commit)
    budget = (
        f"< 100 ms (range {ms(min(from_commit))} to {ms(max(from_commit))}; median from the add's"
        f" launch {ms(statistics.median(from_launch))}, from its row's created_at (just before the"
        f" commit) {ms(statistics.median(from_insert))}; the agent's clock starts ~{ms(offset)} after its exec)"
    )
    return [Row(f"`add` commit to agent start, idle head (n={pickups})", ms(median), budget, median < 0.100)]


def memory_rows() -> list[Row]:
    """The head's own resident memory while 5 agents run."""
    with tempfile.TemporaryDirectory() as tmp:
        root = project(
            Path(tmp).resolve(), {"sleep_agent": {"type": "command", "command": ["sleep", "5"], "max_instances": 5}}
        )
        with running_head(root) as pid:
            for i in range(5):
                cli(root, "add", f"sleep {i}")

            seen: list[Any] = []

            def busy() -> bool | None:
                seen[:] = json.loads(cli(root, "agents", "--json"))
                return True if sum(s["state"] == "busy" and s["pid"] is not None for s in seen) == 5 else None

            try:  # each agent sleeps 5 s: they must all be seen busy well before then
                wait_for("5 busy agents", busy, 4.0)
            except TimeoutError as exc:
                states = ", ".join(f"{s['id']} {s['state']} pid {s['pid']}" for s in seen)
                raise TimeoutError(f"{exc}; last seen: {states or 'no slots'}") from None
            status = Path(f"/proc/{pid}/status").read_text()
            kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    mb = kib / 1024
    return [Row("head RSS with 5 busy agents", f"{mb:.1f} MB", "< 60 MB", mb < 60)]


SECTIONS = ("client", "throughput", "claims", "context", "pickup", "memory")  # in the table's order


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, help="samples per client command (default 21; quick 5)")
    parser.add_argument("--rounds", type=int, help="throughput rounds of xargs and run (default 3; quick 1)")
    parser.add_argument("--pickups", type=int, help="pickup latency samples (default 20; quick 5)")
    parser.add_argument("--tasks", type=int, default=1000, help="tasks per throughput run, xargs' too (default 1000)")
    parser.add_argument(
        "--claims",
        type=int,
        help="timed claims on each engine (default 200; quick 20), a quarter as many finding nothing",
    )
    parser.add_argument("--queued", type=int, default=100_000, help="pending tasks for the claims (default 100000)")
    parser.add_argument("--only", help=f"comma-separated sections to run, of {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet disk first")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run: fewer samples of each")
    args = parser.parse_args()
    runs = args.runs or (5 if args.quick else 21)
    rounds = args.rounds or (1 if args.quick else 3)
    pickups = args.pickups or (5 if args.quick else 20)
    claims = args.claims or (20 if args.quick else 200)
    wait = not args.no_wait
    only = [name.strip() for name in args.only.split(",")] if args.only else list(SECTIONS)
    if unknown := [name for name in only if name not in SECTIONS]:
        parser.error(f"--only: no section {', '.join(unknown)}; the sections are {', '.join(SECTIONS)}")
    for name in [name for name in os.environ if name.startswith("ORCHESTRATE_")]:
        del os.environ[name]  # as ENV leaves them out: the in-process queues read only what the benchmark sets
    compileall.compile_dir(Path(orchestrate.__file__).parent, quiet=1)
    with postgres() if {"client", "throughput", "claims"} & set(only) else contextlib.nullcontext(Pg(None)) as pg:
        if pg.why:
            print(f"note: the PostgreSQL rows are skipped: {pg.why}", file=sys.stderr)
        sections: dict[str, tuple[str, Callable[[], list[Row]]]] = {
            "client": ("client start-up", partial(client_rows, runs, pg)),
            "throughput": ("throughput", partial(throughput_rows, rounds, args.tasks, pg, wait)),
            "claims": ("claim latency", partial(claim_rows, claims, args.queued, pg)),
            "context": ("context updates", partial(context_rows, rounds, wait=wait)),
            "pickup": ("pickup latency", partial(pickup_rows, pickups)),
            "memory": ("head memory", memory_rows),
        }
        rows: list[Row] = []
        for key in SECTIONS:
            if key not in only:
                continue
            name, measure = sections[key]
            found = guarded(name, measure)
            rows += [found] if isinstance(found, Row) else found
        versions = f"SQLite {sqlite3.sqlite_version}{pg.version()}"
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {versions}\n")
    print("| measurement | median | against the budget | within |")
    print("| --- | ---: | --- | --- |")
    for name, median, budget, ok in rows:
        within = "skipped" if budget.startswith("skipped:") else "yes" if ok else "NO"
        print(f"| {name} | {median} | {budget} | {within} |")
    print(f"\nThroughput aim beyond the budget: about {HUEY_AIM}x xargs (Huey's, SqliteHuey with 5 workers).")
    return 0 if all(row.ok for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
