"""The client commands, through typer's runner and through the installed entry point."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
from conftest import ORCHESTRATE, invoke, orchestrate, wait_until
from typer.testing import CliRunner

from orchestrate import cli
from orchestrate.core import store

TASK_KEYS = {
    "id", "description", "status", "priority", "agent_type", "agent", "attempts", "max_retries",
    "depends_on", "created_at", "started_at", "finished_at", "output_file", "log_file", "error",
    "cost_usd", "blocked", "workspace", "verify", "next_try_at", "parent", "plan",
}  # fmt: skip


def add(*args: str) -> str:
    result = invoke("add", *args)
    assert result.exit_code == 0, result.stderr
    return result.stdout.strip()


def tasks_json(*args: str) -> list[dict[str, object]]:
    result = invoke("tasks", "--json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def set_status(task: int, status: str, **fields: object) -> None:
    """Play the head's part: move a task to `status` directly in the queue."""
    conn = sqlite3.connect("tasks.db")
    values = {"status": status, **fields}
    conn.execute(f"UPDATE tasks SET {', '.join(f'{k} = ?' for k in values)} WHERE id = ?", (*values.values(), task))
    conn.commit()
    conn.close()


def one_line_error(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """The one line of an error that exited `code` and printed nothing else, holding each needle."""
    assert result.returncode == code, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def test_add_prints_the_id_and_tasks_lists_it() -> None:
    assert add("Create README.md with project description") == "task_001"
    assert add("Write unit tests", "--priority", "high") == "task_002"
    out = invoke("tasks").stdout.splitlines()
    assert out[0].split() == ["ID", "STATUS", "PRIORITY", "AGENT", "AGE", "DESCRIPTION"]
    assert out[1].split()[:3] == ["task_001", "pending", "normal"]
    assert out[2].split()[:3] == ["task_002", "pending", "high"]
    assert "Write unit tests" in out[2]


def test_task_json_shape_field_by_field(project: Path) -> None:
    (project / "spec.md").write_text("the spec")
    add("first")
    before = time.time()
    add("Implement auth", "-p", "low", "--agent", "codex", "--after", "task_001", "--timeout", "15",
        "--context", "spec.md", "--max-retries", "5")  # fmt: skip
    task = tasks_json()[1]
    assert set(task) == TASK_KEYS
    assert task["id"] == "task_002"
    assert task["description"] == "Implement auth"
    assert task["status"] == "pending" and task["blocked"] is True
    assert task["priority"] == "low"
    assert task["agent_type"] == "codex" and task["agent"] is None
    assert task["attempts"] == 0 and task["max_retries"] == 5
    assert task["depends_on"] == ["task_001"]
    assert task["workspace"] is None and task["verify"] is None  # the configuration's
    assert task["parent"] is None and task["plan"] is False  # queued by a person, not a plan
    created = datetime.fromisoformat(str(task["created_at"])).timestamp()
    assert before - 2 <= created <= time.time() + 2
    for key in ("started_at", "finished_at", "output_file", "log_file", "error", "cost_usd", "next_try_at"):
        assert task[key] is None, key
    shown = json.loads(invoke("show", "task_2", "--json").stdout)
    assert {key: shown[key] for key in task} == task  # the task shape, and beside it what `show` adds
    assert {key: shown[key] for key in set(shown) - TASK_KEYS} == {
        "session_id": None, "input_tokens": None, "output_tokens": None, "max_cost_usd": None, "runs": [],
        "children": [],
    }  # fmt: skip
    human = invoke("show", "2").stdout
    for fragment in ("task_002  Implement auth", "blocked", "depends on:  task_001", "spec.md", "15 min"):
        assert fragment in human


def test_defaults_come_from_the_config(project: Path) -> None:
    (project / "config.yaml").write_text("task_queue:\n  max_retries: 7\n")
    add("x")
    assert tasks_json()[0]["max_retries"] == 7
    assert tasks_json()[0]["priority"] == "normal"


def test_status_without_a_head_or_a_queue(project: Path) -> None:
    result = invoke("status", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {
        "head": {"running": False, "pid": None, "started_at": None, "heartbeat_at": None, "unresponsive": False},
        "counts": {"pending": 0, "running": 0, "completed": 0, "failed": 0, "cancelled": 0},
        "agents": [],
        "worktrees": {"count": 0, "bytes": 0},  # the worktrees, beside the shape's head, counts and agents
        "spending": {"cost_usd": 0, "max_cost_usd": None, "held": False},
        "paused": False,  # and whether a person paused the queue (`orchestrate pause`), since when
        "paused_since": None,
    }
    assert "not running" in invoke("status").stdout
    assert invoke("tasks").stdout.strip() == "no tasks"
    assert not (project / "tasks.db").exists()  # reading never creates the queue


def test_status_counts_and_last_errors() -> None:
    for n in range(5):
        add(f"task {n}")
    set_status(1, "completed")
    set_status(2, "failed", error="claude exited 1: API Error: 400 bad request")
    set_status(3, "running")
    set_status(4, "cancelled")
    counts = json.loads(invoke("status", "--json").stdout)["counts"]
    assert counts == {"pending": 1, "running": 1, "completed": 1, "failed": 1, "cancelled": 1}
    human = invoke("status").stdout
    assert "5 tasks: 1 pending, 1 running, 1 completed, 1 failed, 1 cancelled" in human
    assert "task_002  claude exited 1: API Error: 400 bad request" in human


def test_status_filters() -> None:
    add("a")
    add("b", "--after", "1")
    add("c")
    set_status(3, "running")
    ids = lambda *a: [t["id"] for t in tasks_json(*a)]  # noqa: E731
    assert ids("--status", "pending") == ["task_001", "task_002"]
    assert ids("--status", "blocked") == ["task_002"]
    assert ids("--status", "active") == ["task_003"] == ids("--status", "running")
    assert ids("--status", "failed") == []
    assert "no tasks with status failed" in invoke("tasks", "--status", "failed").stdout


def test_retry_and_cancel_transitions() -> None:
    add("flaky")
    set_status(1, "failed", attempts=4, error="boom", not_before=time.time() + 999)
    result = invoke("retry", "task_001")
    assert result.exit_code == 0 and "pending again" in result.stdout
    task = tasks_json()[0]
    assert (task["status"], task["attempts"], task["finished_at"]) == ("pending", 0, None)
    assert invoke("retry", "1").exit_code == 1  # pending: nothing to retry
    assert invoke("cancel", "1").exit_code == 0
    assert tasks_json()[0]["status"] == "cancelled"
    assert invoke("cancel", "1").exit_code == 1
    assert invoke("retry", "1").exit_code == 0
    set_status(1, "completed")
    assert invoke("retry", "1").exit_code == 1
    assert invoke("cancel", "1").exit_code == 1


def test_cancel_names_the_tasks_left_waiting() -> None:
    add("base")
    add("needs base", "--after", "1")
    result = invoke("cancel", "task_001")
    assert result.exit_code == 0
    assert "task_002" in result.stderr and "blocked" in result.stderr


def test_cancel_a_running_task_says_the_head_stops_it() -> None:
    add("long")
    set_status(1, "running")
    assert "the head stops its agent" in invoke("cancel", "1").stdout


def test_output_fits_80_columns() -> None:
    add("A very long description " * 20, "--agent", "gemini")
    for command in (("tasks",), ("status",), ("show", "1")):
        lines = invoke(*command).stdout.splitlines()
        assert lines and all(len(line) <= 80 for line in lines if not line.startswith("task_001  A very")), command
    row = invoke("tasks").stdout.splitlines()[1]
    assert len(row) <= 80 and row.endswith("…")


def test_unconfigured_agent_is_accepted_with_a_note() -> None:
    result = invoke("add", "x", "--agent", "cluade")
    assert result.exit_code == 0 and result.stdout.strip() == "task_001"
    assert "no agent 'cluade' is configured" in result.stderr


def test_logs_prints_the_task_log(project: Path) -> None:
    add("x")
    one_line_error(orchestrate("logs", "1"), 1, "task_001 has no log yet")
    log = project / ".orchestrate" / "logs" / "task_001.log"
    log.parent.mkdir(parents=True)
    log.write_text("line one\nline two\n")
    set_status(1, "completed")
    assert invoke("logs", "task_001").stdout == "line one\nline two\n"
    assert invoke("logs", "task_001", "-f").stdout == "line one\nline two\n"  # finished: returns


def test_logs_follow_streams_until_the_task_ends(project: Path) -> None:
    add("x")
    set_status(1, "running")
    log = project / ".orchestrate" / "logs" / "task_001.log"
    log.parent.mkdir(parents=True)
    log.write_text("started\n")
    with subprocess.Popen([ORCHESTRATE, "logs", "-f", "1"], stdout=subprocess.PIPE, text=True) as follower:
        assert follower.stdout is not None
        assert follower.stdout.readline() == "started\n"
        with log.open("a") as f:
            f.write("progress\n")
        assert follower.stdout.readline() == "progress\n"
        set_status(1, "completed")
        assert follower.wait(timeout=30) == 0


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (("show", "99"), 1, "task_099 does not exist"),
        (("show", "abc"), 2, "not a task id"),
        (("add", "x", "--priority", "urgent"), 2, "priority must be high, normal or low"),
        (("add", ""), 2, "needs a description"),
        (("add", "   "), 2, "needs a description"),
        (("add", "x", "--after", "42"), 1, "task_042 does not exist"),
        (("add", "x", "--timeout", "0"), 2, "timeout must be a positive number"),
        (("add", "x", "--context", "missing.md"), 2, "context file missing.md does not exist"),
        (("add",), 2, "give a task description or --file"),
        (("tasks", "--status", "bogus"), 2, "--status must be one of"),
        (("retry", "7"), 1, "task_007 does not exist"),
        (("frobnicate",), 2, "No such command"),
        (("add", "x", "--max-retries", "-1"), 2, "--max-retries"),
    ],
)
def test_bad_input_is_one_line_and_adds_nothing(args: tuple[str, ...], code: int, needle: str) -> None:
    add("already queued")
    one_line_error(orchestrate(*args), code, needle)
    assert [t["id"] for t in tasks_json()] == ["task_001"]


def test_task_ids_in_every_accepted_form() -> None:
    add("x")
    for form in ("task_001", "task_1", "1", "TASK_001"):
        assert json.loads(invoke("show", form, "--json").stdout)["id"] == "task_001"


def test_forty_concurrent_adds_get_forty_distinct_ids(project: Path) -> None:
    procs = [
        subprocess.Popen(
            [ORCHESTRATE, "add", f"concurrent task {n}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for n in range(40)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 40, [err for _, err in outs if err]
    ids = {out.strip() for out, _ in outs}
    assert len(ids) == 40
    queued = tasks_json()
    assert {t["id"] for t in queued} == ids
    assert sorted(t["description"] for t in queued) == sorted(f"concurrent task {n}" for n in range(40))


def test_a_file_that_is_not_a_queue_is_refused_and_untouched(project: Path) -> None:
    garbage = project / "tasks.db"
    garbage.write_bytes(b"this is not sqlite\n" * 100)
    one_line_error(orchestrate("add", "x"), 2, "tasks.db", "not an orchestrate queue")
    one_line_error(orchestrate("status"), 2, "tasks.db")
    for head in (("run",), ("start",), ("start", "--foreground")):  # no head starts on it, no traceback
        one_line_error(orchestrate(*head), 2, "tasks.db", "not an orchestrate queue")
    assert garbage.read_bytes() == b"this is not sqlite\n" * 100
    other = project / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE notes (x)")
    conn.commit()
    conn.close()
    before = other.read_bytes()
    one_line_error(orchestrate("--db", "other.db", "add", "x"), 2, "other.db", "not an orchestrate queue")
    assert other.read_bytes() == before


def test_a_queue_from_a_newer_orchestrate_is_refused() -> None:
    add("x")
    conn = sqlite3.connect("tasks.db")
    conn.execute(f"PRAGMA user_version = {len(store.MIGRATIONS) + 1}")
    conn.close()
    one_line_error(orchestrate("status"), 2, "newer orchestrate")


def test_a_busy_queue_is_exit_1_and_nothing_is_lost() -> None:
    add("x")
    holder = sqlite3.connect("tasks.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        one_line_error(orchestrate("add", "y"), 1, "busy")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert [t["description"] for t in tasks_json()] == ["x"]


def test_client_commands_never_import_asyncio() -> None:
    add("x")
    for argv in (["add", "y"], ["status"], ["tasks"]):
        code = (
            "import sys; from orchestrate.cli import main\n"
            f"sys.argv = ['orchestrate', *{argv!r}]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('asyncio', 'aiosqlite') if m in sys.modules))"
        )
        out = subprocess.run([Path(ORCHESTRATE).with_name("python"), "-c", code], capture_output=True, text=True)
        assert out.stdout.strip().splitlines()[-1] == "[]", (argv, out.stdout, out.stderr)


def test_init_writes_a_working_project(project: Path) -> None:
    result = orchestrate("init")
    assert result.returncode == 0
    for path in ("config.yaml", "context/project_overview.md", "context/current_state.md", "context/agent_outputs"):
        assert (project / path).exists(), path
    assert "<!-- orchestrate:begin -->" in (project / "context/current_state.md").read_text()
    assert orchestrate("add", "hello").stdout.strip() == "task_001"
    assert "kept" in orchestrate("init").stdout


def test_help_lists_every_command() -> None:
    out = orchestrate("--help").stdout
    for command in ("init", "add", "status", "tasks", "agents", "show", "logs", "retry", "cancel", "merge", "clean"):
        assert command in out


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_each_command_alone_is_the_command_in_the_whole_app(name: str) -> None:
    alone = CliRunner().invoke(cli.with_commands([name]), [name, "--help"], prog_name="orchestrate")
    whole = invoke(name, "--help")
    assert alone.exit_code == whole.exit_code == 0
    assert alone.stdout == whole.stdout and f"Usage: orchestrate {name} " in whole.stdout
    bad = CliRunner().invoke(cli.with_commands([name]), [name, "--no-such-option"], prog_name="orchestrate")
    assert bad.exit_code == 2 and bad.stderr == invoke(name, "--no-such-option").stderr


def test_the_whole_app_lists_the_commands_in_order() -> None:
    panel = invoke("--help").stdout.split("Commands")[1]
    listed = [line.split()[1] for line in panel.splitlines() if line.startswith("│ ") and line[2] != " "]
    assert listed == list(cli.COMMANDS)


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["status"], "status"),
        (["status", "--help"], "status"),
        (["--db", "q.db", "add", "x"], "add"),
        (["--db=q.db", "--config", "c.yaml", "tasks", "--json"], "tasks"),
        (["--db", "status", "show", "1"], "show"),  # the value of --db, however it reads
        (["stauts"], "stauts"),  # not a command: the whole app says so
        ([], ""),
        (["--help", "status"], ""),
        (["-h"], ""),
        (["--version", "status"], ""),
        (["--db"], ""),
        (["--db", "--help"], ""),
        (["--", "status"], ""),
        (["--verbose", "status"], ""),
    ],
)
def test_invoked_names_the_command_only_after_plain_global_options(args: list[str], name: str) -> None:
    assert cli.invoked(args) == name


def test_a_run_imports_only_its_command() -> None:
    add("x")
    code = (
        "import sys; from orchestrate.cli import main\n"
        "sys.argv = ['orchestrate', '--db', 'tasks.db', 'status']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('orchestrate.cli.')))"
    )
    out = subprocess.run([Path(ORCHESTRATE).with_name("python"), "-c", code], capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == str(sorted(f"orchestrate.cli.{m}" for m in ("app", "head", "render")))


def test_the_whole_app_answers_what_no_one_command_can() -> None:
    assert "Usage: orchestrate [OPTIONS] COMMAND" in orchestrate("--db", "q.db", "--help").stdout
    assert one_line_error(orchestrate("--db", "q.db", "stauts"), 2, "Did you mean 'status', 'start'?")
    assert one_line_error(orchestrate("--db", "q.db"), 2, "Missing command")
    assert orchestrate("--db", "q.db", "--version", "status").stdout.startswith("orchestrate ")


def test_wait_until_reports_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match="the impossible"):
        wait_until(lambda: False, timeout=0.1, message="the impossible")
