"""Every command says what is true: a frozen head, agents that cannot run, a retry backoff, tasks
that will never run, a malformed --agents and control characters in what tasks and agents say."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ORCHESTRATE, alive, invoke, orchestrate, wait_until
from test_cli import one_line_error
from test_head import ok, task

from orchestrate import api

CONFIG = """\
agents:
  claude:
    max_instances: 1
    env: {{IS_SANDBOX: "1"}}
{more}
task_queue:
  retry_delay_seconds: {delay}
  kill_grace_seconds: 1
  max_retries: {retries}
"""


def configure(project: Path, retries: int = 0, delay: float = 0.2, more: str = "") -> None:
    (project / "config.yaml").write_text(CONFIG.format(retries=retries, delay=delay, more=more))


def set_fields(task_id: int, **fields: object) -> None:
    """Play the head's part: write a task's columns directly in the queue."""
    conn = sqlite3.connect("tasks.db")
    conn.execute(f"UPDATE tasks SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?", (*fields.values(), task_id))
    conn.commit()
    conn.close()


# 1. A frozen head: every command says the same thing of it, and stop gives up on it.


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    """`pid` stopped with SIGSTOP for the block, and resumed whatever happens in it."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def says_frozen(text: str, pid: int) -> None:
    assert re.search(rf"head {pid} holds the queue's lock but has not beaten for \d+ s", text), text
    assert f"kill -CONT {pid}" in text and f"kill -9 {pid}" in text and "orchestrate start" in text, text


def test_a_frozen_head_is_named_alike_by_status_start_stop_agents_and_tasks(project: Path, fakes: Path) -> None:
    configure(project)
    ok("start")
    pid = json.loads(ok("status", "--json"))["head"]["pid"]
    ok("add", "queued while frozen")
    with frozen(pid):
        status = orchestrate("status")
        assert status.returncode == 1, status
        says_frozen(status.stdout, pid)
        assert "recovers" not in status.stdout
        shape = json.loads(orchestrate("status", "--json").stdout)
        assert shape["head"]["running"] is False and shape["head"]["unresponsive"] is True
        assert shape["head"]["pid"] == pid
        for command in (("start",), ("stop",), ("start", "--foreground"), ("run",)):
            says_frozen(one_line_error(orchestrate(*command, timeout=30), 1), pid)
        started = time.monotonic()
        says_frozen(one_line_error(orchestrate("stop", "--wait", timeout=30), 1), pid)
        assert time.monotonic() - started < 10
        agents = orchestrate("agents")
        assert agents.returncode == 1 and "not running" not in agents.stdout + agents.stderr
        says_frozen(agents.stderr, pid)
        tasks = orchestrate("tasks")
        assert tasks.returncode == 0 and "task_001" in tasks.stdout
        says_frozen(tasks.stderr, pid)
    assert alive(pid)
    wait_until(lambda: json.loads(ok("status", "--json"))["head"]["running"], message="the head to beat again")
    assert "stopped" in ok("stop")
    assert not alive(pid)


# A process that holds the queue's lock, as a head does (core/head.py _lock), then sleeps through
# SIGTERM, as a head whose loop is stuck would.
LOCKER = (
    "import fcntl, os, signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
    "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
    "print('locked', flush=True)\n"
    "time.sleep(120)\n"
)


def register_head(project: Path, pid: int, beat_age_s: float) -> None:
    with api.opened(project / "tasks.db") as conn:
        now = time.time()
        conn.execute(
            "INSERT INTO head (id, pid, host, started_at, heartbeat_at) VALUES (1, ?, ?, ?, ?)",
            (pid, os.uname().nodename, now - 60, now - beat_age_s),
        )


def test_a_head_that_holds_the_lock_but_stopped_beating_is_said_to_be_silent(project: Path) -> None:
    with api.opened(project / "tasks.db"):
        pass
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(project / "tasks.db")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        register_head(project, holder.pid, beat_age_s=42)
        status = orchestrate("status")
        assert status.returncode == 1
        says_frozen(status.stdout, holder.pid)
        assert re.search(r"not beaten for 4[2-9] s;", status.stdout)
        stop = one_line_error(orchestrate("stop"), 1, "(it was sent SIGTERM and acts on it once it answers)")
        says_frozen(stop, holder.pid)
        assert holder.poll() is None
        says_frozen(one_line_error(orchestrate("start"), 1), holder.pid)
    finally:
        holder.kill()
        holder.wait()


def test_a_live_pid_without_the_lock_is_a_dead_heads_row(project: Path) -> None:
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        register_head(project, stranger.pid, beat_age_s=42)
        status = orchestrate("status")
        assert status.returncode == 0 and "`orchestrate start` recovers" in status.stdout
        assert json.loads(ok("status", "--json"))["head"]["unresponsive"] is False
        one_line_error(orchestrate("stop"), 1, "no head is running")
    finally:
        stranger.kill()
        stranger.wait()


def test_stop_wait_gives_up_on_a_head_that_freezes_while_it_waits(project: Path, fakes: Path) -> None:
    configure(project)
    ok("start")
    pid = json.loads(ok("status", "--json"))["head"]["pid"]
    ok("add", "runs until told [fake:hang]")
    wait_until(lambda: task(1)["status"] == "running", message="the task to run")
    stopper = subprocess.Popen(
        [ORCHESTRATE, "stop", "--wait"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert stopper.stdout is not None
        assert "stopping once the running tasks finish" in stopper.stdout.readline()
        with frozen(pid):
            out, err = stopper.communicate(timeout=30)
            assert stopper.returncode == 1, (out, err)
            assert len(err.splitlines()) == 1
            says_frozen(err, pid)
    finally:
        stopper.kill()
        stopper.wait()
    wait_until(lambda: json.loads(ok("status", "--json"))["head"]["running"], message="the head to beat again")
    ok("stop")
    assert not alive(pid)


# 2. Agents whose program is not installed are named at start; with none that can run, no head starts.


def test_start_names_each_agent_that_cannot_run_and_how_to_install_it(project: Path, fakes: Path) -> None:
    configure(project, more='  gemini: {env: {PATH: "/nonexistent"}}\n  codex: {command: "codex-not-here exec"}')
    result = orchestrate("start")
    try:
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("head running, pid ")
        assert "agent gemini cannot run: 'gemini' is not installed or not on PATH" in result.stderr
        assert "npm install -g @google/gemini-cli" in result.stderr
        assert "agent codex cannot run: 'codex-not-here'" in result.stderr
        assert "claude" not in result.stderr
    finally:
        ok("stop")


@pytest.mark.parametrize("command", [("start",), ("start", "--foreground"), ("run",)])
def test_no_agent_that_can_run_is_a_failed_start(project: Path, fakes: Path, command: tuple[str, ...]) -> None:
    configure(project, more='  codex: {env: {PATH: "/nonexistent"}}')
    (project / "config.yaml").write_text(
        (project / "config.yaml").read_text().replace('IS_SANDBOX: "1"', 'IS_SANDBOX: "1", PATH: "/nonexistent"')
    )
    ok("add", "never runs")
    line = one_line_error(orchestrate(*command, timeout=30), 1, "no agent can run")
    assert "npm install -g @anthropic-ai/claude-code" in line and "npm install -g @openai/codex" in line
    head = json.loads(ok("status", "--json"))["head"]
    assert head["running"] is False and head["pid"] is None
    assert not (project / ".orchestrate" / "head.pid").exists()


# 3. A task waiting out a retry backoff says when it is tried next, and `retry` runs it now.


def test_a_task_in_backoff_shows_its_next_try_and_retry_makes_it_due(project: Path) -> None:
    assert invoke("add", "flaky").exit_code == 0
    set_fields(1, attempts=2, max_retries=3, error="claude exited 1: boom", not_before=time.time() + 100)
    row = invoke("tasks").stdout.splitlines()[1]
    assert re.search(r"pending \(retry in 1m[34]\ds\)", row), row
    assert re.search(r"next try: +in 1m[34]\ds \(attempt 3 of 4\)", invoke("show", "1").stdout)
    assert re.search(r"retry +task_001 in 1m[34]\ds \(attempt 3 of 4\) +claude exited 1: boom", invoke("status").stdout)
    shown = json.loads(invoke("show", "1", "--json").stdout)
    assert shown["status"] == "pending" and shown["next_try_at"].endswith("+00:00")
    result = invoke("retry", "task_001")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("task_001 is due now (it was waiting 1m") and "retry budget reset" in result.stdout
    after = json.loads(invoke("show", "1", "--json").stdout)
    assert (after["status"], after["attempts"], after["next_try_at"]) == ("pending", 0, None)
    again = invoke("retry", "1")
    assert again.exit_code == 1 and "task_001 is pending and not waiting to retry" in again.stderr


def test_retry_ends_a_backoff_the_head_is_waiting_out(project: Path, fakes: Path) -> None:
    configure(project, retries=2, delay=600)
    ok("start")
    ok("add", "Flaky work [fake:fail-times=1]")
    waiting = wait_until(lambda: (t := task(1))["attempts"] == 1 and t["status"] == "pending" and t, message="backoff")
    assert waiting["next_try_at"] is not None and re.search(r"pending \(retry in (9|10)m", ok("tasks"))
    assert "is due now" in ok("retry", "1")
    done = wait_until(lambda: (t := task(1))["status"] == "completed" and t, timeout=30, message="the retry to run")
    assert done["attempts"] == 1  # the budget was reset, then the one run that completed
    ok("stop")


# 4. `run` says which tasks did not complete and why, and exits 1; `add --after` a dead end warns.


def test_run_names_what_did_not_complete_and_exits_1(project: Path, fakes: Path) -> None:
    configure(project)
    ok("add", "Invalid task")
    ok("add", "waits for the failure", "--after", "1")
    ok("add", "waits for the waiter", "--after", "2")
    ok("add", "works")
    ok("add", "called off")
    ok("cancel", "5")
    result = orchestrate("run")
    assert result.returncode == 1, (result.stdout, result.stderr)
    said = [line for line in result.stderr.splitlines() if not re.match(r"\d{4}-\d\d-\d\d ", line)]  # not the log
    assert said == [
        "task_001 failed after 1 attempt: API Error: 400 fake failure (HTTP 400)",
        "task_002 will not run: it waits for task_001, which failed",
        "task_003 will not run: it waits for task_002, which is blocked behind task_001, which failed",
        "task_005 was cancelled",
        "orchestrate: 4 of 5 tasks did not complete",
    ]


def test_run_with_only_a_cancelled_task_exits_1(project: Path, fakes: Path) -> None:
    configure(project)
    ok("add", "base")
    ok("add", "needs base", "--after", "1")
    ok("cancel", "1")
    result = orchestrate("run")
    assert result.returncode == 1
    assert "task_002 will not run: it waits for task_001, which was cancelled" in result.stderr
    assert "task_001 was cancelled" in result.stderr


def test_run_that_completes_everything_says_so(project: Path, fakes: Path) -> None:
    configure(project)
    ok("add", "one")
    ok("add", "two", "--after", "1")
    result = orchestrate("run")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "all 2 tasks completed\n"


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_add_after_a_task_that_will_not_complete_warns(project: Path, status: str) -> None:
    assert invoke("add", "base").exit_code == 0
    set_fields(1, status=status)
    result = orchestrate("add", "next", "--after", "1")
    assert result.returncode == 0 and result.stdout == "task_002\n"
    verb = "failed" if status == "failed" else "was cancelled"
    assert result.stderr == (
        f"note: task_002 will not run until task_001 is retried: it waits for task_001, which {verb}\n"
    )
    through = orchestrate("add", "after next", "--after", "2")
    assert "task_003 will not run until task_001 is retried" in through.stderr
    assert orchestrate("add", "unrelated").stderr == ""


# 5. --agents names each agent once, with a plain count.


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("claude:2,claude:3", "--agents: claude is named twice"),
        ("c:2,c:3", "--agents: c is named twice"),
        ("", "--agents: expected NAME:COUNT"),
        ("claude:2,", "--agents: an empty entry"),
        ("claude:²", "--agents: expected NAME:COUNT"),
        ("claude:99999999999999", "COUNT from 1 to 100"),
        ("claude", "--agents: expected NAME:COUNT"),
    ],
)
@pytest.mark.parametrize("command", ["start", "run"])
def test_a_malformed_agents_option_is_a_usage_error(
    project: Path, fakes: Path, command: str, spec: str, needle: str
) -> None:
    configure(project)
    one_line_error(orchestrate(command, "--agents", spec, timeout=30), 2, needle)
    assert not json.loads(ok("status", "--json"))["head"]["running"]


# 6. Control characters in task text and agent output are shown, never sent to the terminal.

NASTY = "paint \x1b[31mred\x1b[0m\x07 \x9b2J\rover"


def test_control_characters_are_shown_escaped_and_json_stays_exact(project: Path) -> None:
    assert invoke("add", NASTY).exit_code == 0
    assert invoke("add", "broken").exit_code == 0
    set_fields(2, status="failed", error="claude exited 1: \x1b]0;pwned\x07 oops", agent="claude-1")
    for command in (("tasks",), ("show", "1"), ("show", "2"), ("status",)):
        out = orchestrate(*command).stdout
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", out), (command, out)
    assert "paint \\x1b[31mred\\x1b[0m\\x07 \\x9b2J\\x0dover" in orchestrate("show", "1").stdout
    assert "\\x1b]0;pwned\\x07 oops" in orchestrate("show", "2").stdout
    assert "\\x1b]0;pwned\\x07 oops" in orchestrate("status").stdout
    assert json.loads(orchestrate("show", "1", "--json").stdout)["description"] == NASTY
    assert json.loads(orchestrate("tasks", "--json").stdout)[1]["error"] == "claude exited 1: \x1b]0;pwned\x07 oops"
    line = one_line_error(orchestrate("frob\x1b[2Jnicate"), 2, "No such command")
    assert "\x1b" not in line and "\\x1b[2J" in line


def test_logs_on_a_terminal_shows_control_characters(project: Path) -> None:
    assert invoke("add", "x").exit_code == 0
    log = project / ".orchestrate" / "logs" / "task_001.log"
    log.parent.mkdir(parents=True)
    log.write_bytes(b"plain\n\x1b[2Jcleared\tok\n")
    assert orchestrate("logs", "1").stdout == "plain\n\x1b[2Jcleared\tok\n"  # piped: the exact bytes
    leader, follower = pty.openpty()
    try:
        done = subprocess.run([ORCHESTRATE, "logs", "1"], stdout=follower, stderr=subprocess.PIPE, timeout=30)
        assert done.returncode == 0, done.stderr
        os.close(follower)
        follower = -1
        seen = b""
        with contextlib.suppress(OSError):
            while chunk := os.read(leader, 4096):
                seen += chunk
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)
    assert b"\x1b" not in seen and b"\\x1b[2Jcleared\tok" in seen, seen
