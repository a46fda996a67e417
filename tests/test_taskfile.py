"""`orchestrate add --file tasks.yaml`: the seed's Appendix A task format, checked through the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import orchestrate

A1 = """\
id: TASK-001
description: "Create a README file"
priority: normal
context_required: false
preferred_agent: claude
timeout_minutes: 10
"""

A2 = (
    "id: TASK-002  \n"
    + """\
description: "Implement complete authentication system"
priority: high
context_required: true
context_files:
  - "requirements.md"
  - "database_schema.sql"
preferred_agent: codex
timeout_minutes: 60
subtasks:
  - "Design auth schema"
  - "Implement JWT tokens"
  - "Create login endpoints"
  - "Add test coverage"
"""
)


def add_file(text: str, name: str = "tasks.yaml") -> Any:
    Path(name).write_text(text, encoding="utf-8")
    return orchestrate("add", "--file", name)


def queue() -> list[dict[str, Any]]:
    result = orchestrate("tasks", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def show(task: str) -> dict[str, Any]:
    result = orchestrate("show", task, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def total() -> int:
    return sum(json.loads(orchestrate("status", "--json").stdout)["counts"].values())


def one_line_error(result: Any, rc: int = 2) -> str:
    assert result.returncode == rc, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return str(lines[0])


def test_a_list_of_tasks_prints_ids_in_file_order() -> None:
    result = add_file(
        "- description: first\n  priority: low\n"
        "- description: second\n  preferred_agent: claude\n"
        "- description: third\n  priority: high\n"
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "task_001\ntask_002\ntask_003\n", "")
    tasks = queue()
    assert [(t["id"], t["description"], t["priority"], t["agent_type"]) for t in tasks] == [
        ("task_001", "first", "low", None),
        ("task_002", "second", "normal", "claude"),
        ("task_003", "third", "high", None),
    ]
    for t in tasks:
        expected = ("pending", 0, 3, [], False)
        assert (t["status"], t["attempts"], t["max_retries"], t["depends_on"], t["blocked"]) == expected
        assert t["agent"] is t["started_at"] is t["finished_at"] is t["error"] is t["cost_usd"] is None
        assert t["created_at"].endswith("+00:00")


def test_a_single_mapping_appendix_a1() -> None:
    result = add_file(A1)
    assert (result.returncode, result.stdout, result.stderr) == (0, "task_001\n", "")
    task = show("task_001")
    assert task["description"] == "Create a README file"
    assert (task["priority"], task["agent_type"], task["status"]) == ("normal", "claude", "pending")
    assert [t["id"] for t in queue()] == ["task_001"]


def test_a_tasks_mapping() -> None:
    result = add_file("tasks:\n  - description: one\n  - description: two\n    priority: high\n")
    assert (result.returncode, result.stdout) == (0, "task_001\ntask_002\n")
    assert [(t["description"], t["priority"]) for t in queue()] == [("one", "normal"), ("two", "high")]


def test_appendix_a2_with_context_files_and_subtasks() -> None:
    Path("requirements.md").write_text("# requirements\n")
    Path("database_schema.sql").write_text("CREATE TABLE users (id INTEGER);\n")
    result = add_file(A2)
    assert (result.returncode, result.stdout) == (0, "task_001\n")
    assert "no agent 'codex' is configured" in result.stderr  # the default config has claude only
    task = show("task_001")
    assert task["description"] == (
        "Implement complete authentication system\n"
        "- Design auth schema\n- Implement JWT tokens\n- Create login endpoints\n- Add test coverage"
    )
    assert (task["priority"], task["agent_type"]) == ("high", "codex")


def test_depends_on_file_ids_forward_references_and_existing_tasks() -> None:
    assert orchestrate("add", "already queued").stdout == "task_001\n"
    result = add_file(
        "- id: deploy\n  description: deploy\n  depends_on: [build]\n"
        "- id: build\n  description: build\n  depends_on: task_001\n"
        "- id: docs\n  description: docs\n"
    )
    assert (result.returncode, result.stdout) == (0, "task_002\ntask_003\ntask_004\n")
    got = {t["id"]: (t["description"], t["depends_on"], t["blocked"]) for t in queue()}
    assert got == {
        "task_001": ("already queued", [], False),
        "task_002": ("deploy", ["task_003"], True),
        "task_003": ("build", ["task_001"], True),
        "task_004": ("docs", [], False),
    }


@pytest.mark.parametrize(
    "text",
    [
        "- {id: a, description: a, depends_on: [b]}\n- {id: b, description: b, depends_on: [a]}\n",
        "- {id: a, description: a, depends_on: [a]}\n",
    ],
    ids=["a-b-a", "self"],
)
def test_a_cycle_adds_nothing(text: str) -> None:
    orchestrate("add", "already queued")
    line = one_line_error(add_file(text))
    assert "cycle" in line
    assert total() == 1


@pytest.mark.parametrize(
    ("text", "expected", "rc"),
    [
        ("- description: [oops\n", "tasks.yaml: line 2: invalid YAML", 2),
        ("", "tasks.yaml: expected a list of tasks", 2),
        ("- id: a\n  priority: high\n", "tasks.yaml: task a: needs a description", 2),
        ("- description: x\n  owner: me\n", "tasks.yaml: task 1: unknown field 'owner'", 2),
        ("- description: x\n  priority: urgent\n", "tasks.yaml: task 1: priority must be high", 2),
        ("- description: x\n  timeout_minutes: -5\n", "tasks.yaml: task 1: timeout must be a positive", 2),
        ("- {id: a, description: x}\n- {id: a, description: y}\n", "tasks.yaml: two tasks share an id", 2),
        (
            "- description: x\n  depends_on: [frobnicate]\n",
            "tasks.yaml: task 1: depends_on: 'frobnicate' is neither a task in this file nor a task id",
            2,
        ),
        ("- description: x\n  context_files: [missing.md]\n", "tasks.yaml: task 1: context file missing.md", 2),
        ("- just a string\n- another\n", "tasks.yaml: task 1: expected a mapping", 2),
        ("- description: x\n  depends_on: [task_009]\n", "task_009 does not exist", 1),
    ],
    ids=[
        "invalid-yaml",
        "empty",
        "no-description",
        "unknown-field",
        "bad-priority",
        "negative-timeout",
        "duplicate-ids",
        "unresolvable-ref",
        "missing-context-file",
        "non-mappings",
        "missing-task",
    ],
)
def test_malformed_task_files_add_nothing(text: str, expected: str, rc: int) -> None:
    orchestrate("add", "already queued")
    line = one_line_error(add_file(text), rc)
    assert line.startswith("orchestrate: ") and expected in line, line
    assert total() == 1


def test_a_task_file_that_is_not_utf8_is_a_one_line_error() -> None:
    Path("tasks.yaml").write_bytes(b'- description: "caf\xe9"\n')
    assert "tasks.yaml" in one_line_error(orchestrate("add", "--file", "tasks.yaml"))


def test_a_control_character_is_a_one_line_error() -> None:
    assert "tasks.yaml" in one_line_error(add_file('- description: "a\x01b"\n'))


@pytest.mark.parametrize("args", [("add", "x", "--file", "f.yaml"), ("add",)], ids=["both", "neither"])
def test_add_needs_exactly_one_of_description_and_file(args: tuple[str, ...]) -> None:
    Path("f.yaml").write_text("- description: y\n")
    line = one_line_error(orchestrate(*args))
    assert line == "orchestrate: give a task description or --file tasks.yaml (one of them)"
    assert total() == 0


def test_max_retries_defaults_to_the_config() -> None:
    Path("config.yaml").write_text("task_queue:\n  max_retries: 5\n")
    result = add_file("- description: default\n- description: explicit\n  max_retries: 0\n")
    assert result.returncode == 0, result.stderr
    assert [(t["description"], t["max_retries"]) for t in queue()] == [("default", 5), ("explicit", 0)]


def test_a_task_sets_its_own_workspace_and_checks() -> None:
    result = add_file(
        "- description: one\n  workspace: shared\n  verify: pytest -q\n"
        "- description: two\n  verify: [make lint, make test]\n- description: three\n  verify: []\n"
    )
    assert result.returncode == 0, result.stderr
    assert [(t["workspace"], t["verify"]) for t in queue()] == [
        ("shared", ["pytest -q"]), (None, ["make lint", "make test"]), (None, []),
    ]  # fmt: skip
    bad = add_file("- description: four\n  workspace: branch\n")
    assert bad.returncode == 2 and "workspace must be shared or worktree, not 'branch'" in bad.stderr
