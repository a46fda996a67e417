"""Every run on the record, end to end: a real head, the installed CLI, and `command` agents that
are small scripts; the queue's `runs` rows read back as the head wrote them."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

from conftest import orchestrate, wait_until

# Fails on its first run and succeeds on the next: a state file beside it counts the runs.
FLAKY = """\
import pathlib, sys
sys.stdin.read()
count = pathlib.Path(sys.argv[1])
n = int(count.read_text()) + 1 if count.exists() else 1
count.write_text(str(n))
print(f"run {n} says hello")
sys.exit(1 if n == 1 else 0)
"""


def configure(project: Path, command: str, queue: str = "", agent: str = "", retries: int = 2) -> None:
    (project / "config.yaml").write_text(
        "agents:\n"
        "  worker:\n"
        "    type: command\n"
        f"    command: {json.dumps(command)}\n"
        f"{agent}"
        "task_queue:\n"
        f"  max_retries: {retries}\n"
        "  retry_delay_seconds: 0\n"
        "  kill_grace_seconds: 1\n"
        f"{queue}"
    )


def script(project: Path, name: str, text: str) -> str:
    path = project / name
    path.write_text(text)
    return f"{sys.executable} {path}"


def ok(*args: str) -> str:
    done = orchestrate(*args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def rows(project: Path, sql: str, *args: Any) -> list[sqlite3.Row]:
    conn = sqlite3.connect(project / "tasks.db")
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def runs_of(project: Path, task_id: int) -> list[sqlite3.Row]:
    return rows(project, "SELECT * FROM runs WHERE task_id = ? ORDER BY n", task_id)


def test_a_retried_task_keeps_a_row_for_each_run_and_where_its_output_is_in_the_log(project: Path) -> None:
    configure(project, script(project, "flaky.py", FLAKY) + f" {project / 'count'}")
    ok("add", "say hello")
    assert orchestrate("run", timeout=120).returncode == 0
    first, second = runs_of(project, 1)
    assert (first["n"], first["outcome"], first["exit_code"], first["claim"]) == (1, "failed", 1, 1)
    assert (second["n"], second["outcome"], second["exit_code"], second["claim"]) == (2, "completed", 0, 2)
    assert "run 1 says hello" in first["error"] and second["error"] is None
    assert first["agent"] == second["agent"] == "worker-1" and first["agent_type"] == "command"
    assert first["started_at"] <= first["finished_at"] <= second["started_at"] <= second["finished_at"]
    log = (project / ".orchestrate/logs/task_001.log").read_bytes()
    part = [log[r["log_start"] : r["log_end"]].decode() for r in (first, second)]
    assert "run 1 says hello" in part[0] and "run 2" not in part[0]
    assert "run 2 says hello" in part[1] and "run 1" not in part[1]
    # The task says its latest outcome, and how many attempts it spent.
    [task] = rows(project, "SELECT status, attempts FROM tasks WHERE id = 1")
    assert (task["status"], task["attempts"]) == ("completed", 2)


def test_a_cancelled_run_still_gets_its_row(project: Path) -> None:
    configure(project, "sleep 60")
    ok("add", "wait a long time")
    ok("start")
    try:
        wait_until(lambda: "running" in ok("show", "1"), message="the task to start")
        ok("cancel", "1")
        wait_until(lambda: runs_of(project, 1), message="the cancelled run's row")
        [run] = runs_of(project, 1)
        assert run["outcome"] == "cancelled" and run["exit_code"] is not None
        [task] = rows(project, "SELECT status, attempts FROM tasks WHERE id = 1")
        assert (task["status"], task["attempts"]) == ("cancelled", 0)
    finally:
        ok("stop")


def test_an_agent_silent_for_its_idle_timeout_is_stopped_and_says_so(project: Path) -> None:
    configure(project, "sleep 60", agent="    idle_timeout_seconds: 1\n", retries=0)
    ok("add", "say nothing")
    assert orchestrate("run", timeout=120).returncode == 1
    [run] = runs_of(project, 1)
    assert run["outcome"] == "idle" and run["error"] == "no output for 1 s"
    [task] = rows(project, "SELECT status, error FROM tasks WHERE id = 1")
    assert (task["status"], task["error"]) == ("failed", "no output for 1 s")


# Prints a line every 0.3 s for about 3 s: longer than its idle timeout, never silent that long.
CHATTY = """\
import sys, time
sys.stdin.read()
for i in range(10):
    print(f"still working {i}", flush=True)
    time.sleep(0.3)
"""


def test_an_agent_that_keeps_printing_outlives_its_idle_timeout(project: Path) -> None:
    configure(project, script(project, "chatty.py", CHATTY), queue="  idle_timeout_seconds: 1\n")
    ok("add", "keep talking")
    assert orchestrate("run", timeout=120).returncode == 0
    [run] = runs_of(project, 1)
    assert run["outcome"] == "completed"
    assert run["finished_at"] - run["started_at"] > 1  # it ran past the idle timeout, and was not stopped


def test_idle_timeout_zero_means_no_limit_and_bad_values_are_refused(project: Path) -> None:
    configure(project, "true", agent="    idle_timeout_seconds: -1\n")
    done = orchestrate("status")
    assert done.returncode == 2 and "idle_timeout_seconds" in done.stderr and len(done.stderr.splitlines()) == 1
    configure(project, "true", queue="  idle_timeout_seconds: soon\n")
    done = orchestrate("status")
    assert done.returncode == 2 and "task_queue.idle_timeout_seconds" in done.stderr
    configure(project, "true", agent="    idle_timeout_seconds: 0\n")
    assert orchestrate("status").returncode == 0


def test_an_agents_tasks_done_survive_a_head_restart(project: Path) -> None:
    configure(project, "cat")
    ok("add", "one")
    ok("add", "two")
    assert orchestrate("run", timeout=120).returncode == 0
    ok("add", "three")
    ok("start")
    try:
        wait_until(lambda: json.loads(ok("show", "3", "--json"))["status"] == "completed", message="task 3")
        done = wait_until(
            lambda: [a["tasks_done"] for a in json.loads(ok("agents", "--json")) if a["tasks_done"] == 3],
            message="the agent's count to include the runs of the head before",
        )
        assert done == [3]
    finally:
        ok("stop")
