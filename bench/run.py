"""Benchmarks for DESIGN's performance budget and issue 17's; prints a Markdown table for the README.

    python bench/run.py [--runs 21] [--rounds 3] [--pickups 20] [--tasks 1000] [--claims 200]
                        [--queued 100000] [--requests 20] [--after 300] [--only SECTION,...]
                        [--no-wait] [--quick]

Whole-process wall times are medians of runs taken alternately with their baselines (client
start-up with `python -c "import typer, yaml, sqlite3"`; throughput, enqueue + run, with
`xargs -P5` and task-spooler, which the benchmark installs with apt-get when it is missing and
it may, and says so), so machine noise hits them alike. Pickup latency and the head's memory are
measured against a head started with `orchestrate start` in a throwaway project, stopped again
whatever happens.

At scale, on a queue of 100,000 completed and 100,000 pending tasks (filled once by a statement
or two, on /dev/shm, and copied for each measurement that changes it): the head's start-up from
launching `orchestrate start` to its first agent's own clock, and its RSS once 5 agents are busy;
wall and head CPU time per task of 300 `true` tasks after 10 and after 100,000 completed (the
context feature's work, measured from outside); one claim as the head makes it (Queue.claim in
this process) with the pending ready, or all waiting on a running dependency, on backoff, or on
another agent; and the dashboard's answers over one kept-alive connection.

Beside SQLite's figures, the same measurements on PostgreSQL: Debian's server, started as the
tests start it (tests/postgres_server.py: a temporary directory, a Unix socket, fsync=off, so no
commit waits for the disk), stopped at the end. Without psycopg or an installed server, those rows
say they were skipped, and why. They have no budget ("reported"), but for the claims':

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
- at scale, each figure beside SQLite's in the same row, "SQLite / PostgreSQL": the projects are
  git repositories in worktree mode and the pending tasks `workspace: shared`, as above.

Sections (for --only), in the table's order: client, throughput, scale, pickup, memory.
A quick look at the PostgreSQL rows:

    python bench/run.py --quick --only client,throughput,scale --tasks 50 --runs 3 --no-wait
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import contextlib
import http.client
import importlib
import importlib.util
import itertools
import json
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple, Protocol, TypeVar, cast

import orchestrate
from orchestrate import api, configfile
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
CLAIM_BUDGET_S = 0.001  # issue 17: one claim with 100,000 tasks done and 100,000 pending, whatever they wait on
CLIENT_BUDGET = 1.15  # issue 17: `add` and `status` against the floor
# Pending tasks in one statement on either engine, each the row api._insert writes for a plain
# `orchestrate add` (no agent, timeout, workspace or checks), priorities mixed as fill() has them.
INSERT_PENDING = """INSERT INTO tasks (description, priority, rank, max_retries, context_files, created_at)
    WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
    SELECT 'task ' || i || ': refactor module ' || (i % 97), i % 3, i % 3, 3, '[]', ? FROM n"""
# Every pending task waits on the task given (a running one): nothing is claimable.
BLOCK_PENDING = "INSERT INTO deps (task_id, depends_on) SELECT id, ? FROM tasks WHERE status = 'pending'"
# The first tasks done, as a head that ran them leaves them (INSERT_PENDING's ids count from 1): one
# started every 3 s over the past days, each taking up to two minutes.
COMPLETE = """UPDATE tasks SET status = 'completed', agent = 't-1', attempts = 1, started_at = 1.7e9 + 3 * id,
    finished_at = 1.7e9 + 3 * id + id % 120,
    output_file = 'context/agent_outputs/task_' || id || '_output.md' WHERE id <= ?"""
# Tasks a claim may take, behind every waiting one in its order: low priority, and the newest.
INSERT_READY = """INSERT INTO tasks (description, priority, rank, max_retries, context_files, created_at)
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
    SELECT 'ready ' || i, 2, 2, 3, '[]', ? FROM n"""
# tmpfs: the scale rows' copies of their queues take a blink, and measure no disk (file_creation_s)
FAST = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else None
QUIET_CPU_S = 1.0  # the head idle this long is past the context write it defers (context.PUBLISH_S)
CONTEXT_TASKS = 300  # tasks per context run, after 10 and after the scale's completed
REQUESTS = 20  # of each dashboard URL
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
    socket: Path

    def create(self, database: str) -> str: ...

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]: ...

    def url(self, database: str) -> str: ...


class Pg(NamedTuple):
    """The PostgreSQL server of the PostgreSQL rows, or why there is none (which they print instead)."""

    server: Postgres | None
    why: str = ""

    def database(self, template: str = "") -> str:
        """The URL of a new database: empty, or a copy of the one at URL `template` (unused meanwhile)."""
        assert self.server is not None
        name = f"bench_{next(DATABASES)}"
        if not template:
            return self.server.create(name)
        source = urllib.parse.urlsplit(template).path.lstrip("/")
        self.server.run(
            str(self.server.bin / "createdb"), "-h", str(self.server.socket), "-U", "postgres", "-T", source, name
        )
        return self.server.url(name)

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


def pg_fill(url: str, n: int, settled: bool = True, completed: int = 0) -> None:
    """fill()'s queue in a PostgreSQL database, vacuumed and analysed as autovacuum leaves a
    long-lived one. Inserted in one statement (a round trip per task would take minutes) with the
    triggers off, then counted: task_counts' row trigger makes one statement's inserts quadratic
    (each finds the counts row at the end of a chain of its versions: 100,000 take over a minute).
    With `completed`, the first that many done (COMPLETE) and the rest `workspace: shared` instead,
    so that a head runs them in its project, not in a worktree each."""
    conn = pg_connection(url)
    try:
        conn.execute("SET session_replication_role = replica")  # no triggers: the server's user is a superuser
        conn.execute(INSERT_PENDING, (n - 1, time.time()))
        if settled:
            settle(conn)
        if completed:
            conn.execute(COMPLETE, (completed,))
            conn.execute("UPDATE tasks SET workspace = 'shared' WHERE status = 'pending'")
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
        ok = value <= CLIENT_BUDGET * floor
        rows.append(Row(f"`orchestrate {name}`", ms(value), f"{value / floor:.2f}x floor (<= {CLIENT_BUDGET}x)", ok))
    return rows + missing


def project(root: Path, agents: dict[str, Any]) -> Path:
    """A project directory whose config.yaml has these agents (JSON is YAML); its root."""
    (root / "config.yaml").write_text(json.dumps({"agents": agents}), encoding="utf-8")
    return root


class Enqueued(NamedTuple):
    wall: float  # from launching `orchestrate add` to `orchestrate run`'s exit
    add: float  # of which `add --file`


def orchestrate_run(n: int, root: Path) -> Enqueued:
    """`orchestrate add --file` queueing `n` `true` tasks, then `orchestrate run` working them on 5
    slots until none is left, in a new project at `root`: whole processes, as a user runs them."""
    root.mkdir()
    project(root, {"t": {"type": "command", "command": ["true"], "max_instances": SLOTS}})
    tasks = root / "tasks.yaml"  # JSON is YAML; writing it is the user's part, as the shell loop is tsp's
    tasks.write_text(json.dumps([{"description": f"task {i}"} for i in range(n)]), encoding="utf-8")
    start = time.perf_counter()
    subprocess.run([EXE, "add", "--file", str(tasks)], cwd=root, env=ENV, stdout=subprocess.DEVNULL, check=True)
    added = time.perf_counter()
    done = subprocess.run([EXE, "run"], cwd=root, env=ENV, capture_output=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"orchestrate run exited {done.returncode}: {' | '.join(tail)}")
    with api.opened(root / "tasks.db") as conn:
        completed = api.counts(conn)["completed"]
    if completed != n:
        raise RuntimeError(f"orchestrate run completed {completed} of {n} tasks")
    return Enqueued(wall, added - start)


def tsp_env(where: Path, n: int) -> dict[str, str]:
    """task-spooler's environment: a private server (socket and job outputs in `where`) that keeps
    all `n` finished jobs listed; none of the shell's TS_ settings (TS_SAVELIST, TS_ONFINISH...)."""
    env = {k: v for k, v in ENV.items() if not k.startswith("TS_")}
    return env | {"TS_SOCKET": str(where / "socket"), "TS_MAXFINISHED": str(2 * n), "TMPDIR": str(where)}


def carrying(variable: str) -> list[int]:
    """The live processes with `variable` (NAME=value) in their environment."""
    found = []
    for entry in os.scandir("/proc"):
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and variable.encode() in Path(entry.path, "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
    return found


def tsp_finished(env: Mapping[str, str], n: int) -> bool | None:
    """True once `tsp -l` lists `n` finished jobs: `tsp -w` waits for the last one queued only."""
    listed = subprocess.run(["tsp", "-l"], env=env, capture_output=True, text=True, check=True).stdout
    return True if sum(line.split()[1:2] == ["finished"] for line in listed.splitlines()) >= n else None


def tsp_run(n: int, where: Path) -> float:
    """Wall seconds of task-spooler running `n` `true` jobs on 5 slots: its server set to 5 slots, a
    `tsp true` client per job from one shell loop, until every job has finished; the server killed after."""
    where.mkdir()
    env = tsp_env(where, n)
    loop = f"tsp -S {SLOTS} && for i in $(seq {n}); do tsp true >/dev/null || exit 1; done && tsp -w"
    start = time.perf_counter()
    try:
        subprocess.run(["sh", "-c", loop], cwd=where, env=env, stdout=subprocess.DEVNULL, check=True)
        wait_for(f"task-spooler to finish {n} jobs", partial(tsp_finished, env, n), 60.0)
        return time.perf_counter() - start
    finally:
        subprocess.run(["tsp", "-K"], env=env, capture_output=True, check=False)
        server = f"TS_SOCKET={env['TS_SOCKET']}"
        with contextlib.suppress(TimeoutError):
            wait_for("the tsp server to exit", lambda: True if not carrying(server) else None, 5.0)
        for stray in carrying(server):
            print(f"warning: tsp process {stray} outlived `tsp -K`; killed", file=sys.stderr)
            os.kill(stray, signal.SIGKILL)


def task_spooler() -> str:
    """'' when `tsp` is installed; else a note that the benchmark installed it (Debian's task-spooler,
    as root with apt-get), or RuntimeError saying why it could not."""
    if shutil.which("tsp"):
        return ""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(
            "tsp is not installed (Debian's task-spooler), and only root with apt-get can install it here"
        )
    env = {**ENV, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "task-spooler"]
    for argv in (install, ["apt-get", "update"], install):  # the package lists may be missing, or stale
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if shutil.which("tsp"):
            return "; tsp was missing: the benchmark installed it (apt-get install task-spooler)"
    raise RuntimeError(
        f"tsp is not installed, and apt-get install task-spooler failed: {' '.join(done.stderr.split()[-20:])}"
    )


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
    """Enqueue + run of `n` `true` tasks on 5 slots, as whole processes: xargs, task-spooler and
    orchestrate in turn in each round; in the same rounds, the PostgreSQL heads' harness on SQLite
    (one head) and on PostgreSQL (1, 2 and 4 heads). A harness that fails is reported so, without
    losing the other rows."""
    xargs_s: list[float] = []
    tsp_s: list[float] = []
    runs: list[Enqueued] = []
    harness: dict[int, list[Worked]] = {heads: [] for heads in (0, *(HEADS if pg.server else ()))}  # 0: SQLite
    broken: dict[int, str] = {}
    installed = guarded("task-spooler", task_spooler)
    tsp_why = installed.budget if isinstance(installed, Row) else ""
    # Every round's files are kept until the end, for the reason file_creation_s gives.
    with tempfile.TemporaryDirectory() as tmp:
        waited = quiet_disk(Path(tmp)) if wait else "; did not wait for a quiet disk (--no-wait)"
        create = file_creation_s(Path(tmp) / "probe")
        timed(xargs(n), Path(tmp))  # warm up each, as `alternate` does
        if not tsp_why:
            warm_tsp = guarded("", partial(tsp_run, 50, Path(tmp) / "warm-up-tsp"))
            tsp_why = warm_tsp.budget if isinstance(warm_tsp, Row) else ""
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
            if not tsp_why:
                spooled = guarded("", partial(tsp_run, n, Path(tmp) / f"round-{i}-tsp"))
                tsp_why = spooled.budget if isinstance(spooled, Row) else ""
                tsp_s += [] if isinstance(spooled, Row) else [spooled]
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
    base, ours = statistics.median(xargs_s), statistics.median(r.wall for r in runs)
    ratio, add = ours / base, statistics.median(r.add for r in runs)
    tsp_name = f"task-spooler: `tsp -S {SLOTS}`, {n:,} `tsp true` from one shell loop, until all finished"
    if tsp_why:
        tsp_row = Row(tsp_name, "-", f"failed: {tsp_why}", False)
        limit, against = 2.5 * base, f"{ratio:.2f}x xargs (<= 2.5x xargs: no task-spooler to compare)"
    else:
        spooler = statistics.median(tsp_s)
        note = installed if isinstance(installed, str) else ""
        tsp_row = Row(tsp_name, ms(spooler), f"reported: {spooler / base:.2f}x xargs{note}", True)
        limit, against = spooler, f"{ratio:.2f}x xargs, {ours / spooler:.2f}x task-spooler's (<= task-spooler)"
    rows = [
        Row(rf"`seq {n} \| xargs -P{SLOTS} -I{{}} true` (baseline)", ms(base), "-", True),
        tsp_row,
        Row(
            f"`orchestrate add --file` ({n:,} `true` tasks) + `orchestrate run`, {SLOTS} slots",
            ms(ours),
            f"{against}; the add {ms(add)} of it; every task's row, run and log kept;"
            f" a new file took {create * 1000:.2f} ms{waited}",
            ours <= limit,
        ),
    ]
    return rows + heads_rows(harness, broken, base, n, pg)


def heads_rows(harness: dict[int, list[Worked]], broken: dict[int, str], base: float, n: int, pg: Pg) -> list[Row]:
    """The rows of the PostgreSQL heads' harness (0 heads: its SQLite row), against xargs' `base`."""
    rows = []
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
        vs_sqlite = f", {wall / walls[0]:.2f}x SQLite's in the same harness" if 0 in walls else ""
        budget = (
            f"reported: {wall / base:.2f}x xargs{vs_sqlite} (git snapshots included, as there); from launching the"
            f" heads to the last finish; tasks per head {shares}; {counted}"
        )
        rows.append(Row(name, ms(wall), budget, True))
    if not pg.server:
        rows.append(pg.skipped(f"`orchestrate start` with {', '.join(map(str, HEADS))} heads"))
    return rows


class Wait(NamedTuple):
    """What the pending tasks of a claim row wait on, and the statement that makes them."""

    what: str
    sql: str  # with one ?, `arg` of the running task's id
    arg: Callable[[int], object]


WAITS = (
    Wait("a dependency still running", BLOCK_PENDING, lambda running: running),
    Wait(
        "backoff (`not_before` an hour ahead)",
        "UPDATE tasks SET not_before = ? WHERE status = 'pending'",
        lambda running: time.time() + 3600,
    ),
    Wait(
        "another agent (`other`: configured, not the claiming slot's)",
        "UPDATE tasks SET agent_type = ? WHERE status = 'pending'",
        lambda running: "other",
    ),
)


async def claim_times(queue: Queue, times: int, claimable: bool) -> list[float]:
    """Seconds each of `times` claims takes, as the head makes it (slot t-1 of a command agent t, in a
    configuration that has an agent `other` too)."""
    samples = []
    for _ in range(times):
        now = time.time()
        start = time.perf_counter()
        task = await queue.claim("t-1", ("t", "command"), ("t", "other"), now, ())
        samples.append(time.perf_counter() - start)
        if (task is not None) != claimable:
            raise RuntimeError(f"a claim took {task.name}" if task else "a claim found nothing to take")
    return samples


class Claims(NamedTuple):
    takes: list[float]  # seconds of each claim that took a task
    finds_nothing: list[float]  # and of each that found nothing it could take


async def claims_on(
    opened: Callable[[], Queue], times: int, blocked: int, wait: Callable[[int], None] | None
) -> Claims:
    """`times` claims that each take a task. With `wait`, which makes every pending task wait (the
    running task's id given) and adds `times` + 1 ready ones behind them, the claims take those, and
    `blocked` more find nothing. One queue throughout, as a head keeps its connection (and psycopg
    its prepared statements)."""
    queue = opened()
    try:
        first = await queue.claim("t-1", ("t", "command"), ("t", "other"), time.time(), ())  # a warm-up, not timed
        assert first is not None, "nothing to claim"
        if wait is None:
            return Claims(await claim_times(queue, times, True), [])
        wait(first.id)
        await claim_times(queue, 1, True)  # a warm-up of the changed queue
        takes = await claim_times(queue, times, True)
        return Claims(takes, await claim_times(queue, blocked, False))
    finally:
        await queue.close()


def make_wait(queue: str, wait: Wait, times: int, running: int) -> None:
    """Make every pending task of `queue` wait as `wait` has it; then add `times` + 1 ready ones."""
    pg = queue.startswith("postgresql://")
    conn = pg_connection(queue) if pg else store.connect(Path(queue))
    try:
        conn.execute(wait.sql, (wait.arg(running),))
        conn.execute(INSERT_READY, (times, time.time()))
        if pg:
            conn.execute("VACUUM ANALYZE")  # as autovacuum would soon: the plans see what changed
        else:
            conn.commit()
    finally:
        conn.close()


def claims_of(queue: str, where: Path, times: int, blocked: int, wait: Wait | None) -> Claims:
    """claims_on() in this process on `queue`, a SQLite file or a PostgreSQL database."""
    if not queue.startswith("postgresql://"):
        opened: Callable[[], Queue] = partial(Queue, Path(queue))
    else:
        from orchestrate.postgres import Settings
        from orchestrate.postgres.queue import PostgresQueue

        head = cast(Any, SimpleNamespace(busy={}))  # the queue reads only the head's busy slots
        opened = partial(PostgresQueue, Settings(queue, "bench"), head, where / f"{next(DATABASES)}.lock")
    made = partial(make_wait, queue, wait, times + 1) if wait else None
    return asyncio.run(claims_on(opened, times, blocked, made))


def scale_project(root: Path, queue: str, agents: dict[str, Any]) -> Path:
    """A project at `root` whose head works `queue`: a SQLite file; or a PostgreSQL database, from a
    git repository in worktree mode as that queue needs (the fill makes its tasks `workspace: shared`)."""
    if queue.startswith("postgresql://"):
        repository(root)
        cfg = {"agents": agents, "workspace": "worktree", "task_queue": {"database": queue, "head_name": "bench"}}
    else:
        root.mkdir()
        cfg = {"agents": agents, "task_queue": {"database": queue}}
    (root / "config.yaml").write_text(json.dumps(cfg), encoding="utf-8")
    return root


def vm_mb(pid: int, field: str) -> float:
    """A VmRSS-like line of /proc/PID/status, in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith(f"{field}:")) / 1024


def all_busy(root: Path, count: int = SLOTS, timeout: float = 20.0) -> None:
    """Wait until `orchestrate agents` shows `count` slots busy, each with its agent's pid."""
    seen: list[Any] = []

    def busy() -> bool | None:
        seen[:] = json.loads(cli(root, "agents", "--json"))
        return True if sum(s["state"] == "busy" and s["pid"] is not None for s in seen) == count else None

    try:
        wait_for(f"{count} busy agents", busy, timeout)
    except TimeoutError as exc:
        states = ", ".join(f"{s['id']} {s['state']} pid {s['pid']}" for s in seen)
        raise TimeoutError(f"{exc}; last seen: {states or 'no slots'}") from None


class Started(NamedTuple):
    first: float  # seconds from launching `orchestrate start` to the first agent's own clock
    rss: float  # the head's VmRSS, MB, with 5 agents busy
    peak: float  # its VmHWM then


def start_up(queue: str, where: Path) -> Started:
    """A head started on `queue` with 5 slots of an agent that writes the time and sleeps: until its
    first agent writes, and its memory once all 5 are busy; stopped, with its agents, after."""
    stamps = where.with_suffix(".stamps")
    sleeper = [sys.executable, "-I", "-S", "-c", f"{STAMP}; time.sleep(60)", str(stamps)]
    root = scale_project(where, queue, {"stamp": {"type": "command", "command": sleeper, "max_instances": SLOTS}})
    launched = time.time()
    with running_heads([root]) as pids:
        wait_for("the first agent to start", lambda: True if stamps.exists() else None, 30.0)
        all_busy(root)
        rss, peak = vm_mb(pids[0], "VmRSS"), vm_mb(pids[0], "VmHWM")
    first = min(float(line.split()[1]) for line in stamps.read_text().splitlines())
    return Started(first - launched, rss, peak)


def head_cpu(pid: int) -> float:
    """CPU seconds the process has used itself, its agents' not counted (/proc/PID/stat's utime + stime)."""
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    fields = stat[stat.rindex(b")") + 2 :].split()  # after the command's name, which may hold anything
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu(pid: int) -> float:
    """The head's CPU seconds once it has spent at most a clock tick in QUIET_CPU_S: what the last
    completions set off (a context update, deferred up to context.PUBLISH_S) is done."""
    tick = 1.5 / os.sysconf("SC_CLK_TCK")
    seen = [head_cpu(pid), time.monotonic()]

    def quiet() -> float | None:
        cpu, now = head_cpu(pid), time.monotonic()
        if now - seen[1] < QUIET_CPU_S:
            return None
        if cpu - seen[0] < tick:
            return cpu
        seen[:] = [cpu, now]
        return None

    return wait_for("the head to go idle", quiet, 60.0)


class Ran(NamedTuple):
    per_task: float  # wall seconds per task, first start to last finish
    cpu: float  # the head's own CPU seconds per task


def context_run(queue: str, where: Path, n: int) -> Ran:
    """After the completed tasks of `queue`, `n` more `true` tasks (added in this process) worked by an
    idle head with 5 slots and the context feature on, as configured by default."""
    root = scale_project(where, queue, {"t": {"type": "command", "command": ["true"], "max_instances": SLOTS}})
    with running_heads([root]) as pids, api.queue_of(configfile.load(root / "config.yaml")) as conn:
        done = api.counts(conn)["completed"]
        before = idle_cpu(pids[0])
        first = min(api.add_tasks(conn, [api.NewTask(f"new {i}", workspace="shared") for i in range(n)]))

        def finished() -> bool | None:
            counts = api.counts(conn)
            if counts["failed"] or counts["cancelled"]:
                raise RuntimeError(f"{counts['failed']} failed, {counts['cancelled']} cancelled")
            return True if counts["completed"] >= done + n else None

        wait_for(f"{n} tasks to complete", finished, 60 + n * 0.5)
        cpu = idle_cpu(pids[0]) - before
        start, last = conn.execute(
            "SELECT min(started_at), max(finished_at) FROM tasks WHERE id >= ?", (first,)
        ).fetchone()
    return Ran((last - start) / n, cpu / n)


def dashboard_times(root: Path, requests: int) -> dict[str, list[float]]:
    """Seconds of each of `requests` GETs of each of DASHBOARD_PATHS (after one not counted), over one
    kept-alive HTTP/1.1 connection to `orchestrate dashboard` serving `root`'s queue."""
    log = (root.parent / f"{root.name}.dashboard.log").open("w")
    server = subprocess.Popen(
        [EXE, "dashboard", "--port", "0"], cwd=root, env=ENV, stdout=subprocess.PIPE, stderr=log, text=True
    )
    try:
        said = cast(Any, server.stdout).readline()  # "dashboard on http://127.0.0.1:PORT (Ctrl-C stops it)"
        found = re.search(r"http://([^:/\s]+):(\d+)", said)
        if found is None:
            raise RuntimeError(f"orchestrate dashboard said {said!r}, exit {server.poll()}")
        conn = http.client.HTTPConnection(found[1], int(found[2]), timeout=30)
        times: dict[str, list[float]] = {}
        for path in dashboard_paths():
            times[path] = []
            for _ in range(requests + 1):
                start = time.perf_counter()
                conn.request("GET", path)
                reply = conn.getresponse()
                body = reply.read()
                times[path].append(time.perf_counter() - start)
                if reply.status != 200:
                    raise RuntimeError(f"GET {path}: {reply.status} {body[:200]!r}")
            del times[path][0]  # it warmed the caches
        conn.close()
        return times
    finally:
        server.send_signal(signal.SIGINT)  # Ctrl-C, as its help says
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def dashboard_paths() -> list[str]:
    """/api/status, /metrics, and /api/tasks with each filter, as the page asks for them (its TASK_LIMIT)."""
    said = re.search(
        r"const TASK_LIMIT = (\d+)", (Path(orchestrate.__file__).parent / "dashboard" / "page.html").read_text()
    )
    limit = f"&limit={said[1]}" if said else ""
    return ["/api/status", "/metrics", *(f"/api/tasks?status={name}{limit}" for name in api.LIST_FILTERS)]


class Queues(NamedTuple):
    """One engine's queues for the scale rows, each filled once and copied for a measurement that changes it."""

    engine: str  # SQLite or PostgreSQL
    templates: dict[str, str]  # "scale", "done", "few": files, or databases' URLs
    pg: Pg | None = None

    def copy(self, template: str, where: Path) -> str:
        """A new queue like `template`: a copy of its file in `where`, or a database made from it (its URL)."""
        if self.pg is not None:
            return self.pg.database(template=self.templates[template])
        target = where / f"queue-{next(DATABASES)}.db"
        shutil.copyfile(self.templates[template], target)  # closed, so whole: the last close checkpoints its WAL
        return str(target)


def scale_queues(where: Path, done: int, pending: int, pg: Pg | None) -> Queues:
    """The templates: `done` completed and `pending` pending tasks ("scale"), the completed alone
    ("done"), and 10 completed ("few"), as fast as a statement fills them."""
    shapes = {"scale": (done, pending), "done": (done, 0), "few": (10, 0)}
    if pg is not None:
        templates = {name: pg.database() for name in shapes}
        for name, (completed, waiting) in shapes.items():
            pg_fill(templates[name], completed + waiting, settled=False, completed=completed)
        return Queues("PostgreSQL", templates, pg)
    for name, (completed, waiting) in shapes.items():
        with api.opened(where / f"{name}.db") as conn:
            conn.execute(INSERT_PENDING, (completed + waiting - 1, time.time()))
            conn.execute(COMPLETE, (completed,))
    return Queues("SQLite", {name: str(where / f"{name}.db") for name in shapes})


class Scaled(NamedTuple):
    """One engine's figures at scale, each a failed row instead when it could not be had."""

    claims: dict[str, Claims] | Row  # by what the pending wait on ("" for nothing)
    started: list[Started] | Row
    dashboard: dict[str, list[float]] | Row
    context: dict[int, list[Ran]] | Row  # by tasks completed before


def scaled(queues: Queues, where: Path, rounds: int, claims: int, requests: int, n: int, done: int) -> Scaled:
    """Every scale measurement on one engine: claims on copies of the scale queue, one at a time;
    start-ups, then the dashboard, on another; the context runs on copies of the others."""
    where.mkdir()
    label = f" ({queues.engine})"

    def claim_kinds() -> dict[str, Claims]:
        kinds = {"": None, **{w.what: w for w in WAITS}}
        return {
            what: claims_of(queues.copy("scale", where), where, claims, max(5, claims // 4), wait)
            for what, wait in kinds.items()
        }

    found_claims = guarded(f"claims at scale{label}", claim_kinds)
    live = queues.copy("scale", where)
    started = guarded(
        f"head start-up at scale{label}", lambda: [start_up(live, where / f"start-{i}") for i in range(rounds)]
    )

    def dashboard() -> dict[str, list[float]]:
        watched = scale_project(where / "dashboard", live, {"t": {"type": "command", "command": ["true"]}})
        return dashboard_times(watched, requests)

    answered = guarded(f"dashboard at scale{label}", dashboard)

    def context_rounds() -> dict[int, list[Ran]]:
        runs: dict[int, list[Ran]] = {10: [], done: []}
        for i in range(rounds):
            for completed, template in ((10, "few"), (done, "done")):
                runs[completed].append(context_run(queues.copy(template, where), where / f"after-{completed}-{i}", n))
        return runs

    return Scaled(found_claims, started, answered, guarded(f"context updates at scale{label}", context_rounds))


def beside(figures: Mapping[str, str]) -> tuple[str, str]:
    """A row's name suffix and median cell for figures by engine: ` (SQLite / PostgreSQL)`, `a / b`."""
    return f" ({' / '.join(figures)})", " / ".join(figures.values())


def p90(samples: Sequence[float]) -> float:
    return statistics.quantiles(samples, n=10)[-1] if len(samples) > 1 else samples[0]


def scale_rows(rounds: int, claims: int, queued: int, requests: int, n: int, pg: Pg) -> list[Row]:
    """The head, its claims and the dashboard on a queue of `queued` completed and `queued` pending
    tasks, on SQLite and beside it PostgreSQL; the templates filled once, on a fast directory."""
    found: dict[str, Scaled] = {}
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(dir=FAST) as tmp:
        offset = calibrate(Path(tmp) / "calibration")
        for engine, server in (("SQLite", None), ("PostgreSQL", pg)):
            if engine == "PostgreSQL" and pg.server is None:
                rows.append(pg.skipped("the rows at scale"))
                continue
            (Path(tmp) / engine).mkdir()
            queues = guarded(
                f"the queues at scale ({engine})", partial(scale_queues, Path(tmp) / engine, queued, queued, server)
            )
            if isinstance(queues, Row):
                rows.append(queues)
                continue
            found[engine] = scaled(queues, Path(tmp) / f"{engine}-runs", rounds, claims, requests, n, queued)
    rows += [got for s in found.values() for got in s if isinstance(got, Row)]

    def of(field: str) -> dict[str, Any]:
        return {engine: got for engine, s in found.items() if not isinstance(got := getattr(s, field), Row)}

    at = f"at {queued // 1000:,}k done + {queued // 1000:,}k pending"
    rows += start_rows(
        of("started"), at, f"n={rounds}, {SLOTS} slots; the agent's clock starts ~{ms(offset)} after its exec"
    )
    rows += context_rows(of("context"), queued, f"{n} `true` tasks after 10 / {queued:,} done; n={rounds}")
    rows += claim_rows(of("claims"), at, claims)
    return rows + dashboard_rows(of("dashboard"), at, requests)


def sqlite_within(figures: Mapping[str, float], limit: float) -> bool:
    """Whether SQLite's figure is within the limit: PostgreSQL's are reported beside it."""
    return "SQLite" in figures and figures["SQLite"] <= limit


def start_rows(started: Mapping[str, list[Started]], at: str, how: str) -> list[Row]:
    if not started:
        return []
    first = {e: statistics.median(s.first for s in v) for e, v in started.items()}
    rss = {e: statistics.median(s.rss for s in v) for e, v in started.items()}
    peaks = " / ".join(f"{statistics.median(s.peak for s in v):.1f}" for v in started.values())
    suffix, cell = beside({e: ms(v) for e, v in first.items()})
    name = f"head start-up {at}: launching `orchestrate start` to its first agent{suffix}"
    rows = [Row(name, cell, f"< 500 ms (SQLite's); {how}", sqlite_within(first, 0.5))]
    suffix, cell = beside({e: f"{v:.1f} MB" for e, v in rss.items()})
    budget = f"< 60 MB (SQLite's); VmRSS once the 5 sleeping agents are busy; peak (VmHWM) {peaks} MB"
    return [*rows, Row(f"head RSS with 5 busy agents {at}{suffix}", cell, budget, sqlite_within(rss, 60.0))]


def context_rows(context: Mapping[str, dict[int, list[Ran]]], done: int, how: str) -> list[Row]:
    """Per task after 10 and after `done` completed, the context feature on: no dearer with more done."""
    rows = []
    for field, what in (("per_task", "wall time"), ("cpu", "the head's own CPU time")):
        few = {e: statistics.median(getattr(r, field) for r in v[10]) for e, v in context.items()}
        many = {e: statistics.median(getattr(r, field) for r in v[done]) for e, v in context.items()}
        ratio = {e: many[e] / few[e] for e in context}
        suffix, cell = beside({e: f"{v:.2f}x" for e, v in ratio.items()})
        each = "; ".join(f"{e} {ms(few[e], 2)} / {ms(many[e], 2)}" for e in context)
        name = f"{what} per task, after {done:,} done against after 10 (context updates on){suffix}"
        rows.append(Row(name, cell, f"<= 1.1x (SQLite's); {each}; {how}", sqlite_within(ratio, 1.1)))
    return rows


def claim_rows(found: Mapping[str, dict[str, Claims]], at: str, claims: int) -> list[Row]:
    """The claim that takes a task, and the one that finds nothing, by what the pending wait on."""
    rows = []
    for kind in ("", *(w.what for w in WAITS)) if found else ():
        for finds in (False, True) if kind else (False,):
            samples = {e: v[kind].finds_nothing if finds else v[kind].takes for e, v in found.items()}
            suffix, cell = beside({e: ms(statistics.median(v), 3) for e, v in samples.items()})
            what = f"all wait on {kind}" + ("" if finds else f", {claims + 1} ready behind them")
            name = (
                f"one claim that {'finds nothing' if finds else 'takes a task'} {at}: {what if kind else 'all ready'}"
            )
            spread = " / ".join(ms(p90(v), 3) for v in samples.values())
            n = len(next(iter(samples.values())))
            budget = f"< 1 ms each (issue 17); in this process, one connection; n={n}, p90 {spread}"
            rows.append(
                Row(name + suffix, cell, budget, all(statistics.median(v) < CLAIM_BUDGET_S for v in samples.values()))
            )
    return rows


def dashboard_rows(found: Mapping[str, dict[str, list[float]]], at: str, requests: int) -> list[Row]:
    rows = []
    for path in next(iter(found.values())) if found else ():
        medians = {e: statistics.median(v[path]) for e, v in found.items()}
        suffix, cell = beside({e: ms(v) for e, v in medians.items()})
        budget = f"< 20 ms (SQLite's); median of {requests} over one kept-alive HTTP/1.1 connection"
        rows.append(Row(f"dashboard {at}: GET `{path}`{suffix}", cell, budget, sqlite_within(medians, 0.020)))
    return rows


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
            all_busy(root, timeout=4.0)  # each agent sleeps 5 s: they must all be seen busy well before then
            mb = vm_mb(pid, "VmRSS")
    return [Row("head RSS with 5 busy agents, empty queue", f"{mb:.1f} MB", "< 60 MB", mb < 60)]


SECTIONS = ("client", "throughput", "scale", "pickup", "memory")  # in the table's order


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, help="samples per client command (default 21; quick 5)")
    parser.add_argument(
        "--rounds", type=int, help="throughput rounds, start-ups and context runs at scale (default 3; quick 1)"
    )
    parser.add_argument("--pickups", type=int, help="pickup latency samples (default 20; quick 5)")
    parser.add_argument("--tasks", type=int, default=1000, help="tasks per throughput run, xargs' too (default 1000)")
    parser.add_argument(
        "--claims",
        type=int,
        help="timed claims of each kind on each engine (default 200; quick 20), a quarter as many finding nothing",
    )
    parser.add_argument(
        "--queued", type=int, default=100_000, help="completed, and pending, tasks at scale (default 100000 each)"
    )
    parser.add_argument("--requests", type=int, help=f"of each dashboard URL at scale (default {REQUESTS}; quick 5)")
    parser.add_argument(
        "--after", type=int, help=f"tasks of each context run at scale (default {CONTEXT_TASKS}; quick 100)"
    )
    parser.add_argument("--only", help=f"comma-separated sections to run, of {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet disk first")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run: fewer samples of each")
    args = parser.parse_args()
    runs = args.runs or (5 if args.quick else 21)
    rounds = args.rounds or (1 if args.quick else 3)
    pickups = args.pickups or (5 if args.quick else 20)
    claims = args.claims or (20 if args.quick else 200)
    requests = args.requests or (5 if args.quick else REQUESTS)
    tasks_after = args.after or (100 if args.quick else CONTEXT_TASKS)
    wait = not args.no_wait
    only = [name.strip() for name in args.only.split(",")] if args.only else list(SECTIONS)
    if unknown := [name for name in only if name not in SECTIONS]:
        parser.error(f"--only: no section {', '.join(unknown)}; the sections are {', '.join(SECTIONS)}")
    for name in [name for name in os.environ if name.startswith("ORCHESTRATE_")]:
        del os.environ[name]  # as ENV leaves them out: the in-process queues read only what the benchmark sets
    compileall.compile_dir(Path(orchestrate.__file__).parent, quiet=1)
    with postgres() if {"client", "throughput", "scale"} & set(only) else contextlib.nullcontext(Pg(None)) as pg:
        if pg.why:
            print(f"note: the PostgreSQL rows are skipped: {pg.why}", file=sys.stderr)
        sections: dict[str, tuple[str, Callable[[], list[Row]]]] = {
            "client": ("client start-up", partial(client_rows, runs, pg)),
            "throughput": ("throughput", partial(throughput_rows, rounds, args.tasks, pg, wait)),
            "scale": ("at scale", partial(scale_rows, rounds, claims, args.queued, requests, tasks_after, pg)),
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
