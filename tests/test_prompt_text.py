"""Text that cannot travel in an argv still reaches the agent, and never fails another task
(issue 13, item 2: one NUL byte in any task failed every prompt that travels in argv)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import orchestrate
from test_head import configure, ok, started, task


def add_with_nul(project: Path, text: str) -> None:
    (project / "nul.yaml").write_text(f'tasks:\n  - description: "{text}"\n')  # YAML's \0 escape
    ok("add", "--file", "nul.yaml")


def test_a_nul_in_another_tasks_text_fails_no_prompt_in_argv(project: Path) -> None:
    printf = {"type": "command", "command": ["printf", "%s", "{prompt}"]}
    (project / "config.yaml").write_text(json.dumps({"agents": {"echo": printf}, "task_queue": {"max_retries": 0}}))
    add_with_nul(project, "first\\0cancelled")
    ok("cancel", "1")
    add_with_nul(project, "second\\0completed")  # its own NUL, and one in the context it is given
    orchestrate("run")  # its exit status also counts the cancelled task
    done = task(2)
    assert done["status"] == "completed", done["error"]
    answer = (project / done["output_file"]).read_text()
    assert "second\ufffdcompleted" in answer  # the argv carries the NUL as U+FFFD


def test_a_prompt_holding_a_nul_reaches_a_cli_whole_on_stdin(project: Path, fakes: Path) -> None:
    configure(project)
    add_with_nul(project, "keep\\0this")
    assert orchestrate("run").returncode == 0
    assert task(1)["status"] == "completed"
    [run] = started(fakes)
    assert run["prompt_source"] == "stdin" and "keep\0this" in run["prompt"]
