"""Bad input is one line and a non-zero exit, at the edge where it is given (issue 13's first findings)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import orchestrate


def one_line(result: object, code: int, says: str) -> None:
    assert result.returncode == code, (result.stdout, result.stderr)  # type: ignore[attr-defined]
    lines = result.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in result.stderr  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ("task_queue: {retry_delay_seconds: .inf}", "task_queue.retry_delay_seconds"),
        ("task_queue: {timeout_minutes: 1.0e12}", "task_queue.timeout_minutes"),
        ("task_queue: {kill_grace_seconds: .inf}", "task_queue.kill_grace_seconds"),
        ("verify_timeout_seconds: .inf", "verify_timeout_seconds"),
    ],
)
def test_a_duration_must_be_finite_and_bounded_at_load(project: Path, setting: str, key: str) -> None:
    """`.inf` made `run` wait for ever and `show` print a traceback; it is refused when the file is read."""
    (project / "config.yaml").write_text(setting + "\n")
    one_line(orchestrate("status"), 2, key)


def test_a_task_timeout_must_be_finite(project: Path) -> None:
    one_line(orchestrate("add", "x", "--timeout", "inf"), 2, "timeout must be a positive number of minutes")
    assert json.loads(orchestrate("tasks", "--json").stdout) == []  # nothing was added


def test_an_id_beyond_64_bits_names_no_task(project: Path) -> None:
    huge = "9" * 25
    one_line(orchestrate("show", huge), 1, f"task_{huge} does not exist")
    one_line(orchestrate("retry", huge), 1, "does not exist")
    one_line(orchestrate("add", "x", "--after", huge), 1, "does not exist")
    endless = "9" * 5000  # past the digits int() takes
    for command in (["show", endless], ["retry", endless], ["add", "x", "--after", endless]):
        one_line(orchestrate(*command), 1, "(5000 digits) does not exist")
    assert json.loads(orchestrate("tasks", "--json").stdout) == []


def test_agent_slots_are_bounded_in_the_file_and_on_the_command_line(project: Path) -> None:
    (project / "config.yaml").write_text('agents:\n  sh: {type: command, command: ["true"], max_instances: 1000}\n')
    one_line(orchestrate("status"), 2, "agents.sh.max_instances: expected a whole number from 1 to 100, got 1000")
    (project / "config.yaml").write_text('agents:\n  sh: {type: command, command: ["true"]}\n')
    result = orchestrate("run", "--agents", "sh:" + "9" * 5000)
    one_line(result, 2, "--agents: expected NAME:COUNT with COUNT from 1 to 100")
    assert len(result.stderr) < 200


@pytest.mark.parametrize("text", ["²", "١٢", "task_³"])
def test_digits_that_are_not_ascii_are_not_a_task_id(project: Path, text: str) -> None:
    one_line(orchestrate("show", text), 2, "is not a task id")


def test_a_dependency_named_twice_is_one(project: Path) -> None:
    assert orchestrate("add", "first").returncode == 0
    added = orchestrate("add", "second", "--after", "1,task_1", "--after", "1")
    assert added.returncode == 0, added.stderr
    assert json.loads(orchestrate("show", "2", "--json").stdout)["depends_on"] == ["task_001"]


def test_a_command_that_names_no_program_is_refused_at_load(project: Path) -> None:
    (project / "config.yaml").write_text('agents:\n  t: {type: command, command: "   "}\n')
    one_line(orchestrate("status"), 2, "agents.t.command: names no program")


def test_a_context_file_given_as_a_number_is_a_usage_error(project: Path) -> None:
    (project / "tasks.yaml").write_text("- description: x\n  context_files: [5]\n")
    one_line(orchestrate("add", "--file", "tasks.yaml"), 2, "context file 5 does not exist")


def test_task_text_that_is_not_utf8_is_refused_and_nothing_is_added(project: Path) -> None:
    assert orchestrate("add", "kept").returncode == 0
    one_line(orchestrate("add", os.fsdecode(b"fix \xff")), 2, "not valid UTF-8")
    assert [t["description"] for t in json.loads(orchestrate("tasks", "--json").stdout)] == ["kept"]


def test_version_and_short_help(project: Path) -> None:
    version = orchestrate("--version")
    assert version.returncode == 0 and version.stdout.startswith("orchestrate ")
    for args in (["-h"], ["add", "-h"]):
        shown = orchestrate(*args)
        assert shown.returncode == 0 and "Usage: orchestrate" in shown.stdout
    assert "several" in orchestrate("add", "-h").stdout  # --after takes more than one task
