"""The agents' logs on a PostgreSQL queue, against a real server: each head copies its agents'
logs into the database as they grow, capped per task, so that `orchestrate logs` (whole, by
attempt, or followed) and the dashboard read any task's log from any machine."""

from __future__ import annotations

import json
import os
import select
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import ORCHESTRATE, wait_until
from machines import machine, run_in, status, task

from orchestrate.postgres.logs import CAP, PIECE

LOG = Path(".orchestrate/logs/task_001.log")


def finished(where: Path, ref: int = 1) -> Any:
    """The task as `show --json` prints it, once it has ended."""
    return wait_until(lambda: (shown := task(where, ref))["status"] in ("completed", "failed") and shown)


@pytest.fixture
def dashboard() -> Iterator[Any]:
    """Start `orchestrate dashboard` in a machine's directory: its URL; each is stopped at teardown."""
    running: list[subprocess.Popen[str]] = []

    def start(where: Path) -> str:
        argv = [ORCHESTRATE, "dashboard", "--port", "0"]
        process = subprocess.Popen(argv, cwd=where, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        running.append(process)
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        line = process.stdout.readline() if ready else ""
        assert line.startswith("dashboard on http://"), line
        return line.split()[2].rstrip("/")

    yield start
    for process in running:
        process.terminate()
        process.communicate(timeout=10)


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


def test_a_task_run_on_two_machines_reads_whole_from_either(project: Path, machines: Any, dashboard: Any) -> None:
    a = machine(project, "a", 'echo "a says hello"; printf "caf\\303\\251\\n"; exit 1')
    b = machine(project, "b", 'echo "b says hello"')
    assert run_in(a, "add", "greet", "--workspace", "shared", "--max-retries", "0").returncode == 0
    missing = run_in(b, "logs", "1")
    assert missing.returncode == 1 and "task_001 has no log yet" in missing.stderr
    machines(a)
    assert finished(a)["status"] == "failed"
    assert run_in(a, "stop").returncode == 0
    assert run_in(b, "retry", "1").returncode == 0
    machines(b)
    shown = finished(b)
    assert shown["status"] == "completed" and [r["agent"][0] for r in shown["runs"]] == ["a", "b"]
    whole = (a / LOG).read_bytes() + (b / LOG).read_bytes()
    for where in (a, b):
        result = subprocess.run([ORCHESTRATE, "logs", "1"], cwd=where, capture_output=True)
        assert result.returncode == 0 and result.stdout == whole and not result.stderr
    first, second = (run_in(b, "logs", "1", "--attempt", str(n)) for n in (1, 2))
    assert first.stdout.endswith("a says hello\ncafé\n") and "b says" not in first.stdout
    assert second.stdout.endswith("b says hello\n") and "a says" not in second.stdout
    assert run_in(a, "logs", "1", "-a", "2").stdout == second.stdout
    url = dashboard(b)
    chunk = get(f"{url}/api/tasks/1/log?offset=0")
    assert chunk["text"].encode() == whole and chunk["next"] == chunk["size"] == len(whole)
    assert get(f"{url}/api/tasks/1/log?offset={len(whole) - 13}")["text"] == "b says hello\n"


def read_until(process: subprocess.Popen[bytes], wanted: bytes, timeout: float = 30) -> bytes:
    """What `process` printed up to and including `wanted`, waiting for it up to `timeout` s."""
    assert process.stdout is not None
    said = b""
    while wanted not in said:
        ready, _, _ = select.select([process.stdout], [], [], timeout)
        chunk = os.read(process.stdout.fileno(), 1 << 16) if ready else b""
        assert chunk, f"no {wanted!r} in {said!r}"
        said += chunk
    return said


def test_logs_f_on_another_machine_follows_the_task_until_it_ends(project: Path, machines: Any) -> None:
    gate = project / "go"
    agent = f"echo first line; sleep 0.5; echo second line; until [ -e {gate} ]; do sleep 0.1; done; echo last line"
    a, b = machine(project, "a", agent), machine(project, "b", agent)
    assert run_in(a, "add", "talk slowly", "--workspace", "shared").returncode == 0
    follower = subprocess.Popen([ORCHESTRATE, "logs", "1", "-f"], cwd=b, stdout=subprocess.PIPE, bufsize=0)
    try:
        machines(a)  # started after the follower, which waits for the task to run
        said = read_until(follower, b"first line\n")
        assert status(b)["counts"]["running"] == 1  # copied while the agent runs on
        gate.touch()
        rest, _ = follower.communicate(timeout=30)
    finally:
        follower.kill()
    assert follower.returncode == 0 and said + rest == (a / LOG).read_bytes()
    assert said.startswith(b"=== orchestrate: attempt 1 on a-") and rest.endswith(b"last line\n")
    assert task(b, 1)["status"] == "completed"


def test_the_database_keeps_the_newest_mebibyte_and_readers_say_what_it_left_out(
    project: Path, machines: Any, dashboard: Any, pg_url: str
) -> None:
    # More than the cap at once (copied from where the newest CAP bytes start), then more (the oldest go).
    flood = 'yes "flood 1" | head -c 1200000; sleep 1.1; yes "flood 2" | head -c 300000; echo done'
    a, b = machine(project, "a", flood), machine(project, "b", "true")
    assert run_in(a, "add", "flood the log", "--workspace", "shared").returncode == 0
    machines(a)
    finished(a)
    whole = (a / LOG).read_bytes()
    assert len(whole) > CAP + PIECE
    with psycopg.connect(pg_url) as conn:
        pieces = conn.execute("SELECT start, data FROM task_logs WHERE task_id = 1 ORDER BY start").fetchall()
    kept = b"".join(data for _, data in pieces)
    assert CAP - PIECE <= len(kept) <= CAP and whole.endswith(kept) and pieces[0][0] == len(whole) - len(kept)
    result = subprocess.run([ORCHESTRATE, "logs", "1"], cwd=b, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.encode() == kept
    assert f"note: {len(whole) - len(kept):,} bytes of task_001's log from a left out" in result.stderr
    assert "a's .orchestrate/logs/task_001.log has all of it" in result.stderr
    assert subprocess.run([ORCHESTRATE, "logs", "1"], cwd=a, capture_output=True).stdout == whole
    url = dashboard(b)
    start = get(f"{url}/api/tasks/1/log?offset=0")
    assert start["text"].startswith(f"[orchestrate: {len(whole) - len(kept):,} bytes of task_001's log from a")
    assert start["offset"] == 0 and start["size"] == len(whole)
    tail = get(f"{url}/api/tasks/1/log")
    assert tail["text"].endswith("done\n") and tail["next"] == len(whole)


def test_a_database_that_refuses_the_logs_is_logged_once_and_the_work_goes_on(
    project: Path, machines: Any, pg_url: str
) -> None:
    a = machine(project, "a", "echo working; sleep 1.2; echo done")
    assert run_in(a, "add", "work on", "--workspace", "shared").returncode == 0  # which makes the schema
    with psycopg.connect(pg_url, autocommit=True) as conn:  # as a full disk or a revoked grant would
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE 'no logs here'; END $$"
        )
        conn.execute("CREATE TRIGGER refused BEFORE INSERT ON task_logs FOR EACH ROW EXECUTE FUNCTION refuse()")
    machines(a)
    assert finished(a)["status"] == "completed"  # refused at each beat and when it settled
    head_log = (a / ".orchestrate" / "head.log").read_text()
    assert head_log.count("cannot copy the agents' logs to the database") == 1, head_log
    assert run_in(a, "logs", "1").stdout.endswith("working\ndone\n")  # this machine's own file
