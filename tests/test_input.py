"""Bad input is refused where it is given, in one line that says what is wrong and what to do
(issue 13's second findings): the config file, `init`'s directory and `add --context`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import orchestrate


def one_line(result: subprocess.CompletedProcess[str], code: int, says: str) -> str:
    """Assert `result` failed with `code` and one line on stderr that contains `says`; return the line."""
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr
    return lines[0]


def descriptions() -> list[str]:
    return [t["description"] for t in json.loads(orchestrate("tasks", "--json").stdout)]


def refused_and_nothing_lost(project: Path, config: str, says: str) -> str:
    """A task queued before the bad config is written is still there once the config is fixed."""
    assert orchestrate("add", "queued before").returncode == 0
    (project / "config.yaml").write_text(config)
    line = one_line(orchestrate("status"), 2, says)
    one_line(orchestrate("add", "not added"), 2, says)
    (project / "config.yaml").unlink()
    assert descriptions() == ["queued before"]
    return line


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ('{"A=B": x}', 'config.yaml: agents.claude.env: "A=B" is not a variable name (it contains "=")'),
        ('{"": x}', 'config.yaml: agents.claude.env: "" is not a variable name (it is empty)'),
        ('{"A\\0B": x}', 'config.yaml: agents.claude.env: "A\\u0000B" is not a variable name (it contains NUL)'),
        ('{A: "x\\0y"}', "config.yaml: agents.claude.env.A: the value contains NUL"),
    ],
    ids=["equals", "empty", "nul-in-name", "nul-in-value"],
)
def test_an_env_entry_no_process_can_hold_is_refused_at_load(project: Path, env: str, says: str) -> None:
    """These failed only when an agent was started; now the file is refused when it is read."""
    line = refused_and_nothing_lost(project, f"agents:\n  claude:\n    env: {env}\n", says)
    assert "\0" not in line


def test_env_numbers_are_still_strings_and_other_values_still_refused(project: Path) -> None:
    (project / "config.yaml").write_text("agents:\n  claude:\n    env: {A: 1, B: 2.5}\n")
    assert orchestrate("status").returncode == 0
    (project / "config.yaml").write_text("agents:\n  claude:\n    env: {A: [1]}\n")
    one_line(orchestrate("status"), 2, "agents.claude.env.A: expected a string or number (quote it)")


@pytest.mark.parametrize("agents", ["[claude]", "claude", "[{claude: {}}]"])
def test_agents_that_are_not_a_mapping_say_what_shape_they_need(project: Path, agents: str) -> None:
    """A list or a bare name read as "no agents configured", which sent users looking for the wrong fault."""
    line = refused_and_nothing_lost(project, f"agents: {agents}\n", "config.yaml: agents: expected a mapping")
    assert "agent names to settings" in line and "agents: {claude: {}}" in line


def test_agents_empty_still_says_none_are_configured(project: Path) -> None:
    (project / "config.yaml").write_text("agents: {}\n")
    one_line(orchestrate("status"), 2, "config.yaml: agents: no agents configured")


def test_a_context_directory_is_named_a_directory_not_missing(project: Path) -> None:
    (project / "notes").mkdir()
    line = one_line(orchestrate("add", "x", "--context", "notes"), 2, "context file notes is a directory")
    assert "does not exist" not in line and "--context" in line and "take files" in line
    (project / "tasks.yaml").write_text("- description: y\n  context_files: [notes]\n")
    one_line(orchestrate("add", "--file", "tasks.yaml"), 2, "task 1: context file notes is a directory")
    assert descriptions() == []
    one_line(orchestrate("add", "x", "--context", "gone.md"), 2, "context file gone.md does not exist")
