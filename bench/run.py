"""Benchmarks for DESIGN's performance budget; prints a Markdown table for the README.

    python bench/run.py [--runs 21] [--rounds 3] [--pickups 20] [--quick]

Whole-process wall times are medians of runs taken alternately with their baseline (client
start-up with `python -c "import typer, yaml, sqlite3"`, throughput with `xargs -P5`), so machine
noise hits both alike. Pickup latency and the head's memory are measured against a head started
with `orchestrate start` in a throwaway project, stopped again whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import contextlib
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import orchestrate
from orchestrate import api, configfile, context
from orchestrate.core import process, store

BIN = Path(sys.executable).parent
EXE = str(BIN / "orchestrate")
FLOOR = [sys.executable, "-c", "import typer, yaml, sqlite3"]
XARGS = ["sh", "-c", "seq 1000 | xargs -P5 -I{} true"]
# Bytecode is written as a normal install would; a PYTHONDONTWRITEBYTECODE shell would
# otherwise make every run recompile the package and measure the compiler.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
HUEY_AIM = 3.3  # SqliteHuey, 5 workers, the same 1,000 tasks, against xargs on this machine
# The recording agent: an absolute interpreter without site (no pyenv shim, no .pth files), so
# the time it writes is as close to its exec as Python gets; `calibrate` measures the rest.
STAMP = "import os, sys, time; t = time.time(); open(sys.argv[1], 'a').write(f\"{os.environ['ORCHESTRATE_TASK']} {t!r}\\n\")"
QUIET_FILE_S = 0.00005  # an idle disk here creates an empty file in 0.02-0.03 ms
POLL_S = 0.005  # polling interval while waiting on the head; measurements use timestamps, not polls

T = TypeVar("T")


class Row(NamedTuple):
    name: str
    median: str
    budget: str
    ok: bool


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def fill(db: Path, n: int) -> None:
    """A queue of `n` tasks across priorities and states, as a long-lived project has."""
    batch = [api.NewTask(description=f"task {i}: refactor module {i % 97}", priority=i % 3) for i in range(n)]
    with api.opened(db) as conn:
        api.add_tasks(conn, batch)
        conn.execute("UPDATE tasks SET status = 'completed' WHERE id % 4 = 0")
        conn.execute("UPDATE tasks SET status = 'failed', error = 'exit 1' WHERE id % 97 = 0")


def timed(argv: Sequence[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def alternate(commands: dict[str, list[str]], cwd: Path, runs: int) -> dict[str, float]:
    """Median seconds of each command, run in turn so that drift affects all of them."""
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for argv in commands.values():
        timed(argv, cwd)  # warm the page cache and the bytecode
    for _ in range(runs):
        for name, argv in commands.items():
            samples[name].append(timed(argv, cwd))
    return {name: statistics.median(values) for name, values in samples.items()}


def client_rows(runs: int) -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        fill(cwd / "q10k.db", 10_000)
        fill(cwd / "q100k.db", 100_000)
        medians = alternate(
            {
                "floor": FLOOR,
                "add (10k queued)": [EXE, "--db", "q10k.db", "add", "Write the changelog"],
                "status (10k queued)": [EXE, "--db", "q10k.db", "status"],
                "status (100k queued)": [EXE, "--db", "q100k.db", "status"],
            },
            cwd,
            runs,
        )
    floor = medians.pop("floor")
    rows.append(Row('`python -c "import typer, yaml, sqlite3"` (floor)', ms(floor), "-", True))
    for name, value in medians.items():
        ok = value <= 1.25 * floor and value < 0.100
        rows.append(Row(f"`orchestrate {name}`", ms(value), f"{value / floor:.2f}x floor (<= 1.25x, < 100 ms)", ok))
    return rows


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


def throughput_rows(rounds: int) -> list[Row]:
    xargs: list[float] = []
    runs: list[float] = []
    # Every round's files are kept until the end, for the reason file_creation_s gives.
    with tempfile.TemporaryDirectory() as tmp:
        waited = quiet_disk(Path(tmp))
        create = file_creation_s(Path(tmp) / "probe")
        timed(XARGS, Path(tmp))  # warm up both, as `alternate` does
        orchestrate_run(50, Path(tmp) / "warm-up")
        for i in range(rounds):
            xargs.append(timed(XARGS, Path(tmp)))
            runs.append(orchestrate_run(1000, Path(tmp) / f"round-{i}"))
    base, ours = statistics.median(xargs), statistics.median(runs)
    ratio = ours / base
    return [
        Row(r"`seq 1000 \| xargs -P5 -I{} true` (baseline)", ms(base), "-", True),
        Row(
            "`orchestrate run`: 1,000 `true` tasks, 5 slots",
            ms(ours),
            f"{ratio:.2f}x xargs (<= 4x; aim ~{HUEY_AIM}x, Huey's); a new file took {create * 1000:.2f} ms{waited}",
            ratio <= 4.0,
        ),
    ]


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


def context_rows(rounds: int, n: int = 300) -> list[Row]:
    samples: dict[int, list[tuple[float, float]]] = {10: [], 10_000: []}
    with tempfile.TemporaryDirectory() as tmp:  # kept to the end, as in throughput_rows
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


@contextlib.contextmanager
def running_head(root: Path) -> Iterator[int]:
    """A head started with `orchestrate start` in `root`; stopped, with every agent, on the way out."""
    cli(root, "start")
    pid: int | None = None
    try:
        pid = int(json.loads(cli(root, "status", "--json"))["head"]["pid"])
        yield pid
    finally:
        with contextlib.suppress(RuntimeError):
            cli(root, "stop")
        if pid is not None and api.alive(pid):  # `stop` failed: end the head ourselves
            os.kill(pid, signal.SIGKILL)
            print(f"warning: head {pid} outlived `orchestrate stop`; killed", file=sys.stderr)
        # Whatever its agents left behind carries the queue in its environment.
        left = process.strays(str((root / "tasks.db").resolve()))
        pids = [p for procs in left.values() for p, _ in procs]
        if pids:
            print(f"warning: {len(pids)} agent process(es) outlived the head; killed", file=sys.stderr)
            for stray in pids:
                process.send_signal(stray, signal.SIGKILL, group=False)


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, help="samples per client command (default 21; quick 5)")
    parser.add_argument("--rounds", type=int, help="throughput rounds of xargs and run (default 3; quick 1)")
    parser.add_argument("--pickups", type=int, help="pickup latency samples (default 20; quick 5)")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run: fewer samples of each")
    args = parser.parse_args()
    runs = args.runs or (5 if args.quick else 21)
    rounds = args.rounds or (1 if args.quick else 3)
    pickups = args.pickups or (5 if args.quick else 20)
    compileall.compile_dir(Path(orchestrate.__file__).parent, quiet=1)
    sections: list[tuple[str, Callable[[], list[Row]]]] = [
        ("client start-up", partial(client_rows, runs)),
        ("throughput", partial(throughput_rows, rounds)),
        ("context updates", partial(context_rows, rounds)),
        ("pickup latency", partial(pickup_rows, pickups)),
        ("head memory", memory_rows),
    ]
    rows: list[Row] = []
    for name, measure in sections:
        try:
            rows += measure()
        except Exception as exc:  # one broken measurement must not hide the others
            traceback.print_exc()
            why = " ".join(f"{type(exc).__name__}: {exc}".split()).replace("|", "\\|")
            rows.append(Row(f"{name}: failed", "-", why, False))
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}\n")
    print("| measurement | median | against the budget | within |")
    print("| --- | ---: | --- | --- |")
    for name, median, budget, ok in rows:
        print(f"| {name} | {median} | {budget} | {'yes' if ok else 'NO'} |")
    print(f"\nThroughput aim beyond the budget: about {HUEY_AIM}x xargs (Huey's, SqliteHuey with 5 workers).")
    return 0 if all(row.ok for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
