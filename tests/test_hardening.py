"""Bad input is one line and a non-zero exit, at the edge where it is given (issue 13's first findings)."""

from __future__ import annotations

import json
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
    one_line(orchestrate("add", "x", "--after", huge), 1, "does not exist, so nothing can wait for it")


@pytest.mark.parametrize("text", ["²", "١٢", "task_³"])
def test_digits_that_are_not_ascii_are_not_a_task_id(project: Path, text: str) -> None:
    one_line(orchestrate("show", text), 2, "is not a task id")


def test_a_dependency_named_twice_is_one(project: Path) -> None:
    assert orchestrate("add", "first").returncode == 0
    added = orchestrate("add", "second", "--after", "1,task_1", "--after", "1")
    assert added.returncode == 0, added.stderr
    assert json.loads(orchestrate("show", "2", "--json").stdout)["depends_on"] == ["task_001"]
