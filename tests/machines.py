"""Machines for the PostgreSQL tests: each a clone of one bare remote, with its own config.yaml,
head and agent slots, all on the database conftest's pg_url names."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import psycopg
from conftest import ORCHESTRATE


def git(where: Path, *argv: str) -> str:
    return subprocess.run(["git", *argv], cwd=where, capture_output=True, text=True, check=True).stdout


def remote(root: Path) -> Path:
    """A bare repository standing for the team's remote, with one commit."""
    seed, bare = root / "seed", root / "remote.git"
    seed.mkdir()
    git(seed, "init", "-q", "-b", "main")
    (seed / "README").write_text("a project\n")
    (seed / ".gitignore").write_text("config.yaml\n")
    git(seed, "add", ".")
    git(seed, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    git(root, "clone", "-q", "--bare", str(seed), str(bare))
    return bare


def machine(
    root: Path, name: str, command: str, slots: int = 2, lease: float = 5, more: str = "", agent: str = ""
) -> Path:
    """A clone of the remote standing for one machine: its own config, head and agent slots."""
    bare = root / "remote.git" if (root / "remote.git").exists() else remote(root)
    where = root / name
    git(root, "clone", "-q", str(bare), str(where))
    for key, value in (("user.name", name), ("user.email", f"{name}@example.com")):
        git(where, "config", key, value)
    (where / "config.yaml").write_text(
        f"agents:\n  {agent or name}:\n    type: command\n    command: [sh, -c, {json.dumps(command)}]\n"
        f"    max_instances: {slots}\n{more}"
        f"workspace: worktree\n"
        f"task_queue:\n  head_name: {name}\n  lease_seconds: {lease}\n  retry_delay_seconds: 0\n"
    )
    return where


def run_in(where: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ORCHESTRATE, *argv], cwd=where, capture_output=True, text=True, timeout=120)


def status(where: Path) -> dict[str, Any]:
    result = run_in(where, "status", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def counts() -> dict[str, int]:
    """The queue's counts by status, read from the database itself: a poll that starts no process
    (a command's start-up, psycopg's import included, would take a core from the heads it waits on)."""
    with psycopg.connect(os.environ["ORCHESTRATE_DATABASE"]) as conn:
        return dict(conn.execute("SELECT status, n FROM task_counts").fetchall())


def task(where: Path, ref: int) -> dict[str, Any]:
    return json.loads(run_in(where, "show", str(ref), "--json").stdout)  # type: ignore[no-any-return]


def head_pid(where: Path) -> int:
    return int((where / ".orchestrate" / "head.pid").read_text())


def ledger(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []
