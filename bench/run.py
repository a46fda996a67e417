"""Benchmarks for DESIGN's performance budget; prints a Markdown table for the README.

    python bench/run.py [--runs 21]

Whole-process wall times are medians of runs taken alternately with the floor
(`python -c "import typer, yaml, sqlite3"`), so machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import compileall
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import orchestrate
from orchestrate import store

BIN = Path(sys.executable).parent
FLOOR = [sys.executable, "-c", "import typer, yaml, sqlite3"]
# Bytecode is written as a normal install would; a PYTHONDONTWRITEBYTECODE shell would
# otherwise make every run recompile the package and measure the compiler.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def fill(db: Path, n: int) -> None:
    """A queue of `n` tasks across priorities and states, as a long-lived project has."""
    batch = [
        store.NewTask(description=f"task {i}: refactor module {i % 97}", priority=i % 3) for i in range(n)
    ]
    with store.opened(db) as conn:
        store.add_tasks(conn, batch)
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


def client_rows(runs: int) -> list[tuple[str, float, str, bool]]:
    exe = str(BIN / "orchestrate")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        fill(cwd / "q10k.db", 10_000)
        fill(cwd / "q100k.db", 100_000)
        medians = alternate(
            {
                "floor": FLOOR,
                "add (10k queued)": [exe, "--db", "q10k.db", "add", "Write the changelog"],
                "status (10k queued)": [exe, "--db", "q10k.db", "status"],
                "status (100k queued)": [exe, "--db", "q100k.db", "status"],
            },
            cwd,
            runs,
        )
    floor = medians.pop("floor")
    rows.append(('`python -c "import typer, yaml, sqlite3"` (floor)', floor, "-", True))
    for name, value in medians.items():
        ok = value <= 1.25 * floor and value < 0.100
        rows.append((f"`orchestrate {name}`", value, f"{value / floor:.2f}x floor (<= 1.25x, < 100 ms)", ok))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21, help="samples per command (default 21)")
    args = parser.parse_args()
    compileall.compile_dir(Path(orchestrate.__file__).parent, quiet=1)
    rows = client_rows(args.runs)
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}\n")
    print("| measurement | median | against the budget | within |")
    print("| --- | ---: | --- | --- |")
    for name, seconds, budget, ok in rows:
        print(f"| {name} | {seconds * 1000:.1f} ms | {budget} | {'yes' if ok else 'NO'} |")
    return 0 if all(ok for *_, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
