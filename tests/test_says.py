"""Every command says what is true: agents that cannot run, a malformed --agents and control
characters in what tasks and agents say."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import ORCHESTRATE, invoke, orchestrate

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


def ok(*args: str) -> str:
    result = orchestrate(*args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def task(ref: str | int) -> dict[str, Any]:
    return json.loads(ok("show", str(ref), "--json"))  # type: ignore[no-any-return]


def set_fields(task_id: int, **fields: object) -> None:
    """Play the head's part: write a task's columns directly in the queue."""
    conn = sqlite3.connect("tasks.db")
    conn.execute(f"UPDATE tasks SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?", (*fields.values(), task_id))
    conn.commit()
    conn.close()


def one_line_error(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


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
