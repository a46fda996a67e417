"""The queue on PostgreSQL, against a real server (conftest's postgres_server): the commands
answer as they do on SQLite, a head works the queue, several heads share it without running a
task twice, and a machine that dies, freezes or loses the database fails safe."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import ORCHESTRATE, live_pids, orchestrate, wait_until

from orchestrate.postgres import dialect

TIMES = {"created_at", "started_at", "finished_at", "next_try_at", "paused_since", "since"}


def test_translate_placeholders_percent_and_empty_lists() -> None:
    assert dialect.translate("SELECT printf('task_%03d', id) FROM t WHERE a = ? AND b LIKE ?") == (
        "SELECT printf('task_%%03d', id) FROM t WHERE a = %s AND b LIKE %s"
    )
    assert dialect.translate("WHERE t.id NOT IN () AND agent_type IN ( )") == "WHERE TRUE AND FALSE"
    assert dialect.translate("WHERE id IN (?,?)") == "WHERE id IN (%s,%s)"
    assert dialect.statements("BEGIN IMMEDIATE")[0] == "BEGIN"
    with pytest.raises(ValueError, match="no PostgreSQL equivalent"):
        dialect.statements("PRAGMA user_version")


def _timeless(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _timeless(v) for k, v in data.items() if k not in TIMES}
    if isinstance(data, list):
        return [_timeless(v) for v in data]
    return data


COMMANDS = [
    ("add", "first task"),
    ("add", "second", "--after", "1", "--priority", "high"),
    ("add", "third", "--agent", "codex", "--parent", "1"),
    ("add", ""),  # refused
    ("add", "waits on nothing", "--after", "99"),  # refused
    ("cancel", "3"),
    ("retry", "3"),
    ("retry", "1"),  # refused: pending
    ("pause",),
    ("status", "--json"),
    ("resume",),
    ("tasks", "--json"),
    ("tasks", "--tree", "--json"),
    ("tasks", "--status", "blocked", "--json"),
    ("show", "2", "--json"),
    ("show", "42"),  # refused
    ("status", "--json"),
    ("agents", "--json"),
]


def _answers() -> list[tuple[int, Any]]:
    answers = []
    for argv in COMMANDS:
        result = orchestrate(*argv)
        said = result.stdout if result.returncode == 0 else result.stderr
        answers.append((result.returncode, _timeless(json.loads(said)) if "--json" in argv else said.strip()))
    return answers


def test_every_command_answers_as_on_sqlite(project: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    on_postgres = _answers()
    monkeypatch.delenv("ORCHESTRATE_DATABASE")
    on_sqlite = _answers()
    assert on_postgres == on_sqlite
    assert not (project / "tasks.db").exists() or on_sqlite  # the SQLite run made its own file
    assert [code for code, _ in on_postgres].count(0) == len(COMMANDS) - 4


def _machine(root: Path, name: str, command: str, slots: int = 2, lease: float = 5) -> Path:
    """A project directory standing for one machine: its own config, head and agent slots."""
    where = root / name
    where.mkdir()
    (where / "config.yaml").write_text(
        f"agents:\n  {name}:\n    type: command\n    command: [sh, -c, {json.dumps(command)}]\n"
        f"    max_instances: {slots}\n"
        f"task_queue:\n  head_name: {name}\n  lease_seconds: {lease}\n  retry_delay_seconds: 0\n"
    )
    return where


def _in(where: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ORCHESTRATE, *argv], cwd=where, capture_output=True, text=True, timeout=120)


def _status(where: Path) -> dict[str, Any]:
    result = _in(where, "status", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _task(where: Path, ref: int) -> dict[str, Any]:
    return json.loads(_in(where, "show", str(ref), "--json").stdout)  # type: ignore[no-any-return]


def _head_pid(where: Path) -> int:
    return int((where / ".orchestrate" / "head.pid").read_text())


@pytest.fixture
def machines(project: Path, pg_url: str) -> Any:
    started: list[Path] = []

    def start(where: Path) -> None:
        result = _in(where, "start")
        assert result.returncode == 0, result.stderr
        started.append(where)

    yield start
    for where in started:
        if (pid_file := where / ".orchestrate" / "head.pid").exists():
            with contextlib.suppress(ProcessLookupError):  # killed by the test
                os.kill(int(pid_file.read_text()), signal.SIGCONT)
                _in(where, "stop")
    for pid in live_pids(f"ORCHESTRATE_QUEUE={project}".encode()):
        os.kill(pid, signal.SIGKILL)


def _ledger(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_a_head_runs_the_real_cli_fakes_on_postgres(project: Path, fakes: Path, pg_url: str) -> None:
    (project / "config.yaml").write_text("agents:\n  claude:\n    max_instances: 2\n  codex: {}\n")
    for text in ("write hello.py", "write tests", "review it"):
        assert orchestrate("add", text).returncode == 0
    assert orchestrate("add", "codex work", "--agent", "codex").returncode == 0
    result = orchestrate("run", timeout=120)
    assert result.returncode == 0, result.stderr
    counts = json.loads(orchestrate("status", "--json").stdout)["counts"]
    assert counts["completed"] == 4
    shown = json.loads(orchestrate("show", "4", "--json").stdout)
    assert shown["agent"] == "codex-1" and shown["runs"][0]["outcome"] == "completed"
    assert (project / shown["output_file"]).read_text().strip()
    assert json.loads((project / "context" / "completed_tasks.json").read_text())


def test_eight_heads_share_2000_tasks_and_none_runs_twice(project: Path, machines: Any) -> None:
    ledger = project / "ledger"
    names = [f"m{i}" for i in range(1, 9)]
    where = [_machine(project, n, f'echo "$ORCHESTRATE_TASK" >> {ledger}') for n in names]
    (project / "tasks.yaml").write_text("".join(f"- description: task number {i}\n" for i in range(2000)))
    assert _in(where[0], "add", "--file", str(project / "tasks.yaml")).returncode == 0
    for machine in where:
        machines(machine)
    wait_until(lambda: _status(where[0])["counts"]["completed"] == 2000, timeout=240, message="2000 completed")
    ran = Counter(_ledger(ledger))
    assert len(ran) == 2000 and set(ran.values()) == {1}
    tasks = json.loads(_in(where[3], "tasks", "--json").stdout)
    by_agent = Counter(t["agent"].rsplit("-", 1)[0] for t in tasks)
    assert len(by_agent) >= 4, by_agent  # the work was shared, not taken by one head
    assert {t["attempts"] for t in tasks} == {1}


def test_a_machine_killed_at_once_has_its_tasks_taken_over(project: Path, machines: Any) -> None:
    ledger = project / "ledger"
    agent = f'echo "start-$ORCHESTRATE_TASK" >> {ledger}; sleep 2; echo "done-$ORCHESTRATE_TASK" >> {ledger}'
    a, b = _machine(project, "a", agent), _machine(project, "b", agent)
    for text in ("one", "two"):
        assert _in(a, "add", text).returncode == 0
    machines(a)
    wait_until(lambda: _status(a)["counts"]["running"] == 2, message="a runs both")
    os.kill(_head_pid(a), signal.SIGKILL)  # the machine is gone: its head and its agents at once
    for pid in live_pids(f"ORCHESTRATE_QUEUE={a}".encode()):
        os.kill(pid, signal.SIGKILL)
    machines(b)
    wait_until(lambda: _status(b)["counts"]["completed"] == 2, timeout=60, message="b finishes them")
    for ref in (1, 2):
        shown = _task(b, ref)
        assert shown["agent"].startswith("b-") and shown["attempts"] == 1  # the lost run spent nothing
    done = Counter(line for line in _ledger(ledger) if line.startswith("done-"))
    assert done == {"done-task_001": 1, "done-task_002": 1}


def test_a_frozen_head_past_its_lease_records_nothing(project: Path, machines: Any) -> None:
    ledger = project / "ledger"
    agent = f'sleep 3; echo "$ORCHESTRATE_TASK-by-$0" >> {ledger}; echo "result from $0"'
    a, b = _machine(project, "a", agent.replace("$0", "a")), _machine(project, "b", agent.replace("$0", "b"))
    assert _in(a, "add", "the contested task").returncode == 0
    machines(a)
    wait_until(lambda: _status(a)["counts"]["running"] == 1, message="a runs it")
    os.kill(_head_pid(a), signal.SIGSTOP)
    machines(b)
    wait_until(lambda: (_task(b, 1)["agent"] or "").startswith("b-"), timeout=30, message="b takes it over")
    wait_until(lambda: "task_001-by-a" in _ledger(ledger), message="a's agent finishes, its head frozen")
    os.kill(_head_pid(a), signal.SIGCONT)  # a wakes with a result for a claim it no longer holds
    wait_until(lambda: _status(b)["counts"]["completed"] == 1, timeout=30, message="b completes it")
    shown = _task(b, 1)
    assert shown["agent"].startswith("b-") and shown["attempts"] == 1
    output = (b / shown["output_file"]).read_text()
    assert "result from b" in output and "result from a" not in output
    assert "task_001-by-b" in _ledger(ledger)


def test_the_database_stopped_mid_run_ends_every_task_once(project: Path, machines: Any, postgres_server: Any) -> None:
    ledger = project / "ledger"
    a = _machine(project, "a", f'sleep 2; echo "$ORCHESTRATE_TASK" >> {ledger}', slots=3, lease=20)
    for i in range(5):
        assert _in(a, "add", f"task {i}").returncode == 0
    machines(a)
    wait_until(lambda: _status(a)["counts"]["running"] == 3, message="three running")
    postgres_server.stop("fast")
    try:
        wait_until(lambda: len(_ledger(ledger)) >= 3, message="the agents finish while the database is down")
    finally:
        postgres_server.start()
    wait_until(lambda: _status(a)["counts"]["completed"] == 5, timeout=60, message="every task completed")
    assert Counter(_ledger(ledger)) == Counter(f"task_{i:03d}" for i in range(1, 6))
    assert {_task(a, i)["attempts"] for i in range(1, 6)} == {1}
    assert _status(a)["head"]["running"]
