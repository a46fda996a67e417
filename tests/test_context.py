"""Shared context: the prompt's layout, the files written after each task, and their atomicity."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import orchestrate, wait_until
from test_head import configure, ok, started, task, wait_for

from orchestrate import api, configfile, context
from orchestrate.core import agent, store
from orchestrate.core.config import Config


def prompt_of(t: store.Task, cfg: Config) -> tuple[str, list[str]]:
    """The prompt the head builds for `t` with the shared context, and the notes for its log."""
    found, notes = context.sections(t, cfg)
    return agent.prompt(t, cfg.root, found), notes


def cfg_for(project: Path, **ctx: Any) -> Config:
    return configfile.parse({"context": ctx} if ctx else {}, "config.yaml", project, project / "config.yaml")


def add(project: Path, *batch: api.NewTask) -> list[store.Task]:
    with api.opened(project / "tasks.db") as conn:
        ids = api.add_tasks(conn, list(batch))
        return [api.get_task(conn, i) for i in ids]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_prompt_layout(project: Path) -> None:
    cfg = cfg_for(project)
    write(project / "context/project_overview.md", "Project: Test System\n")
    write(project / "context/current_state.md", "We are halfway.\n")
    dep, _ = add(project, api.NewTask("make a plan"), api.NewTask("unused"))
    write(agent.output_path(cfg, dep.id), "# task_001: make a plan\n\nThe plan: two modules.\n")
    write(project / "docs/api.md", "GET /users\n")
    [child] = add(project, api.NewTask("build it\nsecond line", depends_on=(dep.id,), context_files=("docs/api.md",)))
    text, notes = prompt_of(child._replace(attempts=1, error="x" * 5000 + "the tail"), cfg)
    assert notes == []
    expected = f"""# Task task_003

build it
second line

{agent.INSTRUCTIONS.format(cwd=project)}

## Project overview (project_overview.md)

Project: Test System

## Current state (current_state.md)

We are halfway.

## Output of task_001, which this task builds on

# task_001: make a plan

The plan: two modules.

## Context file docs/api.md

GET /users

## The previous attempt failed

{("x" * 5000 + "the tail")[-agent.ERROR_TAIL :]}
"""
    assert text == expected


def test_large_files_are_named_and_the_whole_prompt_stays_bounded(project: Path) -> None:
    cfg = cfg_for(project, inline_max_kb=4, prompt_max_kb=10)
    write(project / "context/project_overview.md", "o" * 3000)
    big = write(project / "big.md", "b" * 9000)
    smalls = [write(project / f"s{i}.md", f"{i}" * 3000) for i in range(5)]
    [t] = add(project, api.NewTask("t", context_files=("big.md", *(p.name for p in smalls))))
    text, notes = prompt_of(t, cfg)
    assert [n for n in notes if "current_state.md" not in n] == [] and "b" * 100 not in text
    assert f"{big} (8 KB) is too large to include: read it there." in text
    inlined = [p for p in smalls if p.read_text() in text]
    assert [p.name for p in inlined] == ["s0.md", "s1.md"]  # 3 KB overview + 2 x 3 KB, then the 10 KB budget is spent
    for p in smalls[2:]:
        assert f"{p} (2 KB) is too large to include" in text
    # However much context accumulates, what is copied in stays under the budget.
    assert len(text.encode()) < 10 * 1024 + 4000


def test_a_missing_context_file_is_skipped_with_a_note(project: Path) -> None:
    cfg = cfg_for(project)
    write(project / "gone.md", "soon gone")
    [t] = add(project, api.NewTask("t", context_files=("gone.md",)))
    (project / "gone.md").unlink()
    text, notes = prompt_of(t, cfg)
    assert "Context file gone.md" not in text and "soon gone" not in text
    assert any("project_overview.md" in n for n in notes)
    assert any(n.startswith(f"{project / 'gone.md'}:") and "left out" in n for n in notes)


def test_a_fifo_or_a_directory_named_as_context_never_holds_the_prompt(project: Path) -> None:
    cfg = cfg_for(project)
    os.mkfifo(project / "pipe")  # nobody writes to it: reading it the usual way would wait forever
    (project / "notes").mkdir()
    [t] = add(project, api.NewTask("t", context_files=("pipe", "notes")))
    text, notes = prompt_of(t, cfg)
    assert "## Context file pipe\n\n\n" in text  # empty for now: what a reader finds there
    assert "Context file notes" not in text
    assert any(n.startswith(f"{project / 'notes'}:") and "left out" in n for n in notes)


def test_an_atomic_write_makes_its_directory_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "context/agent_outputs/task_001_output.md"
    context.write_atomic(target, "first\n")
    context.write_atomic(target, "second, é\n")
    assert target.read_text(encoding="utf-8") == "second, é\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["task_001_output.md"]
    in_the_way = target.parent / "task_002_output.md"  # a directory where the file goes: the rename fails
    (in_the_way / "inside").mkdir(parents=True)
    with pytest.raises(IsADirectoryError):
        context.write_atomic(in_the_way, "never\n")
    assert sorted(p.name for p in target.parent.iterdir()) == ["task_001_output.md", "task_002_output.md"]


def test_the_block_is_replaced_and_the_rest_kept_byte_for_byte(project: Path) -> None:
    cfg = cfg_for(project)
    state = project / "context/current_state.md"
    mine = "# Mine\r\nkeep\tthis \xe9\n\n" + context.BEGIN + "\nold block\n" + context.END + "\nafter \n"
    state.parent.mkdir()
    state.write_bytes(mine.encode())
    context.late_edits(cfg, context.write_state(cfg, context.BEGIN + "\nnew\n" + context.END))
    assert state.read_bytes() == mine.replace("old block", "new").encode()
    state.write_text("no markers yet")
    context.late_edits(cfg, context.write_state(cfg, context.BEGIN + "\nnew\n" + context.END))
    assert state.read_text() == f"no markers yet\n\n{context.BEGIN}\nnew\n{context.END}\n"


def test_a_line_appended_to_the_file_just_rewritten_over_is_brought_over(project: Path) -> None:
    """A person's `echo >> current_state.md` that opened the file just before the head's rename and
    wrote just after it wrote into the file the rename let go: the next catch-up brings it over."""
    cfg = cfg_for(project)
    state = project / "context/current_state.md"
    state.parent.mkdir()
    state.write_text("# Mine\n")
    with open(state, "a") as person:  # opened before the rewrite...
        replaced = context.write_state(cfg, context.BEGIN + "\nnew\n" + context.END)
        person.write("note 19\n")  # ...written after it: into the old file
    assert "note 19" not in state.read_text()
    context.late_edits(cfg, replaced)
    assert state.read_text() == f"# Mine\n\n{context.BEGIN}\nnew\n{context.END}\nnote 19\n"


def test_the_block_lists_recent_tasks_and_counts_the_rest() -> None:
    recent = [
        context.Line(7, "seven", "running", "claude-1", None, None),
        context.Line(5, "five", "completed", "codex-1", "context/agent_outputs/task_005_output.md", "Made it.\nMore"),
        context.Line(6, "six", "failed", "claude-2", "context/agent_outputs/task_006_output.md", "exited 1"),
        context.Line(8, "eight", "pending", None, None, None),
    ]
    counts = {"pending": 3, "running": 1, "completed": 10, "failed": 1, "cancelled": 0}
    block = context.state_block(recent, counts).splitlines()
    assert block[0] == context.BEGIN and block[-1] == context.END
    items = [line for line in block if line.startswith("- [")]
    assert items == [
        "- [x] task_005 five (done; output in context/agent_outputs/task_005_output.md): Made it. More",
        "- [ ] task_006 six (FAILED; output in context/agent_outputs/task_006_output.md): exited 1",
        "- [ ] task_007 seven (running on claude-1)",
        "- [ ] task_008 eight (pending)",
    ]
    assert "Earlier tasks, not listed: 2 pending, 9 completed." in block[-2]


def test_acceptance_4_tasks_build_on_each_other(project: Path, fakes: Path) -> None:
    """The seed's test 4: the overview reaches task 1; task 1's output reaches task 2."""
    configure(project)
    ok("init")
    configure(project)  # init wrote the commented config; the test's own settings again
    (project / "context/project_overview.md").write_text("Project: Test System\n")
    ok("start")
    ok("add", "Read project overview and create implementation plan [fake:echo=Project:]")
    wait_for(1, "completed")
    ok("add", "Based on plan in context, implement first module")
    wait_for(2, "completed")
    ok("stop")
    first = (project / "context/agent_outputs/task_001_output.md").read_text()
    assert "I read: Project: Test System" in first  # the agent's own answer quotes the overview
    assert "plan" in (project / "context/agent_outputs/task_002_output.md").read_text()
    second = started(fakes)[1]["prompt"]
    assert "- [x] task_001 Read project overview and create implementation plan [fake:echo=Project:] (done;" in second
    assert "context/agent_outputs/task_001_output.md): Done: Read project overview" in second
    assert task(1)["output_file"] == "context/agent_outputs/task_001_output.md"


def test_a_dependency_output_reaches_its_dependent(project: Path, fakes: Path) -> None:
    configure(project)
    ok("add", "Write the plan [fake:echo=Write the plan]")
    ok("add", "Follow the plan", "--after", "1")
    assert orchestrate("run").returncode == 0
    first, second = started(fakes)
    assert "## Output of task_001, which this task builds on" in second["prompt"]
    assert "I read: Write the plan" in second["prompt"]  # task 1's final message, verbatim
    assert "## Output of" not in first["prompt"]


def test_the_output_file_records_the_run_and_git_changes(project: Path, fakes: Path) -> None:
    subprocess.run(["git", "init", "-q"], check=True)
    (project / ".gitignore").write_text("fake_runs.jsonl\n.fake-agent-runs-*\n")
    (project / "old.txt").write_text("modified before the task: not its change\n")
    configure(project)
    ok("add", "Create NOTES.md for the team")
    dot_git = sorted(str(p) for p in (project / ".git").rglob("*"))
    assert orchestrate("run").returncode == 0
    assert sorted(str(p) for p in (project / ".git").rglob("*")) == dot_git  # git's own files untouched
    out = (project / "context/agent_outputs/task_001_output.md").read_text()
    header, changes = out.split("## Files changed")[0], out.split("## Files changed")[1].split("##")[0]
    assert header.startswith("# task_001: Create NOTES.md for the team\n")
    for fact in (
        "- agent: claude-1",
        "- status: completed",
        "- attempts: 1",
        "- started: 20",
        "- duration: ",
        "- cost: $",
    ):
        assert fact in header
    assert changes.split() == ["-", "A", "NOTES.md"]  # not old.txt, not orchestrate's own files
    assert out.endswith("## Final message\n\nDone: Create NOTES.md for the team (created NOTES.md)\n")
    [entry] = json.loads((project / "context/completed_tasks.json").read_text())
    assert entry == {
        "id": "task_001",
        "description": "Create NOTES.md for the team",
        "status": "completed",
        "agent": "claude-1",
        "finished_at": task(1)["finished_at"],
        "output_file": "context/agent_outputs/task_001_output.md",
    }


def test_outside_git_the_output_says_changes_are_not_tracked(project: Path, fakes: Path) -> None:
    configure(project)
    ok("add", "Invalid task: nothing to do")
    assert orchestrate("run").returncode == 1
    out = (project / "context/agent_outputs/task_001_output.md").read_text()
    assert "- status: failed" in out and "- attempts: 2" in out and "- error: " in out
    assert "(not a git repository, so not tracked)" in out
    [entry] = json.loads((project / "context/completed_tasks.json").read_text())
    assert entry["status"] == "failed"


def test_update_on_completion_false_writes_outputs_only(project: Path, fakes: Path) -> None:
    configure(project, more="context:\n  update_on_completion: false\n")
    ok("add", "one")
    assert orchestrate("run").returncode == 0
    assert (project / "context/agent_outputs/task_001_output.md").exists()
    assert not (project / "context/completed_tasks.json").exists()
    assert not (project / "context/current_state.md").exists()


BURST = """\
agents:
  quick:
    type: command
    command: ["sh", "-c", "echo done"]
    max_instances: 5
"""


def test_readers_never_see_a_partial_file_during_200_completions(project: Path) -> None:
    (project / "config.yaml").write_text(BURST)
    state = project / "context/current_state.md"
    state.parent.mkdir()
    state.write_text("# Current state\n\nA person's notes.\n")
    with api.opened(project / "tasks.db") as conn:
        api.add_tasks(conn, [api.NewTask(f"task {i}") for i in range(200)])
    problems: list[str] = []
    reads = 0
    finished = threading.Event()

    def read_all() -> None:
        nonlocal reads
        completed = project / "context/completed_tasks.json"
        while not finished.is_set():
            try:
                entries = json.loads(completed.read_text())
                assert isinstance(entries, list)
                text = state.read_text()
                assert text.count(context.BEGIN) <= 1 and text.startswith("# Current state\n\nA person's notes.\n")
                reads += 1
            except FileNotFoundError:
                continue
            except (ValueError, AssertionError) as exc:
                problems.append(repr(exc))

    reader = threading.Thread(target=read_all)
    reader.start()
    try:
        assert orchestrate("run").returncode == 0
    finally:
        finished.set()
        reader.join()
    assert problems == [] and reads > 0
    entries = json.loads((project / "context/completed_tasks.json").read_text())
    assert sorted(e["id"] for e in entries) == [store.task_name(i) for i in range(1, 201)]
    block = state.read_text().split(context.BEGIN)[1]
    assert "task_200 task 199 (done" in block and "Earlier tasks, not listed: 180 completed." in block


def test_a_person_editing_current_state_while_the_head_runs_keeps_their_edits(project: Path) -> None:
    (project / "config.yaml").write_text(BURST)
    state = project / "context/current_state.md"
    state.parent.mkdir()
    state.write_text("# Current state\n")
    ok("start")
    notes = []
    for i in range(30):
        ok("add", f"task {i}")
        with open(state, "a") as f:  # as `echo >> current_state.md` would
            f.write(f"note {i}\n")
        notes.append(f"note {i}")
    wait_until(lambda: task(30)["status"] == "completed", message="the last task")
    ok("stop")
    text = state.read_text()
    assert [line for line in text.splitlines() if line.startswith("note ")] == notes
    assert text.count(context.BEGIN) == text.count(context.END) == 1
    assert "task_030 task 29 (done" in text


@pytest.mark.parametrize("bad", ["not json", "{}"])
def test_completed_tasks_json_is_rebuilt_from_the_queue(project: Path, bad: str) -> None:
    (project / "config.yaml").write_text(BURST)
    ok("add", "first")
    assert orchestrate("run").returncode == 0
    (project / "context/completed_tasks.json").write_text(bad)  # a person broke it
    ok("add", "second")
    assert orchestrate("run").returncode == 0
    entries = json.loads((project / "context/completed_tasks.json").read_text())
    assert [e["id"] for e in entries] == ["task_001", "task_002"]
