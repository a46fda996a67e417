"""Agents that queue work: the environment that names the queue, parents and plan trees, the
subtask limit, fan-in, and a planner in a worktree whose subtasks build on its branch."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import ORCHESTRATE, orchestrate, wait_until
from test_head import configure, ok, started, task
from test_workspace import WORKTREE, branch_file, git, repository

from orchestrate.api import NewTask
from orchestrate.cli import render
from orchestrate.core.store import Task
from orchestrate.shapes import task_tree

PLANNER = "Plan the report feature [fake:subtasks=2]"


@pytest.fixture
def planner_path(fakes: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fakes first on PATH, then the installed `orchestrate`, which the fake planner runs."""
    monkeypatch.setenv("PATH", f"{os.environ['PATH']}{os.pathsep}{Path(ORCHESTRATE).parent}")
    return fakes


def tasks_json(*args: str) -> list[dict[str, Any]]:
    return json.loads(ok("tasks", "--json", *args))  # type: ignore[no-any-return]


def run_all(expect: int = 0) -> subprocess.CompletedProcess[str]:
    result = orchestrate("run", timeout=180)
    assert result.returncode == expect, (result.stdout, result.stderr)
    return result


def test_a_planner_in_a_worktree_queues_subtasks_and_a_final_task_that_run_in_order(
    project: Path, planner_path: Path
) -> None:
    repository(project)
    configure(project, claude=2, retries=0, more=WORKTREE)
    ok("add", "--plan", PLANNER)
    run_all()

    found = {t["id"]: t for t in tasks_json()}
    assert set(found) == {"task_001", "task_002", "task_003", "task_004"}
    assert all(t["status"] == "completed" for t in found.values())
    assert [found[t]["parent"] for t in ("task_002", "task_003", "task_004")] == ["task_001"] * 3
    assert found["task_001"]["plan"] and not found["task_002"]["plan"]
    assert found["task_004"]["depends_on"] == ["task_002", "task_003"]
    # the final task started only once both parts had finished
    starts = {r["env"]["ORCHESTRATE_TASK"]: r["time"] for r in started(planner_path)}
    assert starts["task_004"] > max(_finished(found["task_002"]), _finished(found["task_003"]))

    # the planner was told how, and where: its environment names the head's queue and config
    planner = next(r for r in started(planner_path) if r["env"]["ORCHESTRATE_TASK"] == "task_001")
    assert planner["cwd"] == str(project / ".orchestrate/worktrees/task_001")
    assert planner["env"]["ORCHESTRATE_DB"] == str(project / "tasks.db")
    assert planner["env"]["ORCHESTRATE_CONFIG"] == str(project / "config.yaml")
    assert "## This task is a plan" in planner["prompt"] and "--after" in planner["prompt"]
    assert "commit what the\nsubtasks need" in planner["prompt"]  # worktree mode: they start from its branch

    # nothing of orchestrate's was made inside the worktree, or committed on its branch
    tree = project / ".orchestrate/worktrees/task_001"
    assert not [p for p in tree.rglob("*") if p.name.startswith("tasks.db") or p.name == ".orchestrate"]
    for branch in ("task_001", "task_002", "task_004"):
        files = git("ls-tree", "-r", "--name-only", f"orchestrate/{branch}").split()
        assert not [f for f in files if "tasks.db" in f or ".orchestrate" in f], (branch, files)

    # the subtasks' branches start from the planner's; the final task's from the merge of both parts
    assert git("merge-base", "--is-ancestor", "orchestrate/task_001", "orchestrate/task_002") == ""
    assert "Part 1 of Plan the report feature" in branch_file("task_002", "part_1.md")
    for name in ("part_1.md", "part_2.md", "final.md"):
        assert branch_file("task_004", name)

    # the planner's output names what it queued; show lists its children
    output = (project / found["task_001"]["output_file"]).read_text()
    assert "## Tasks it queued" in output and "- task_004: Join the parts of Plan the report feature" in output
    shown = task("task_001")
    assert shown["children"] == ["task_002", "task_003", "task_004"]
    assert "children:    task_002 (completed), task_003 (completed), task_004 (completed)" in ok("show", "1")


def test_a_task_after_two_conflicting_branches_fails_saying_where_they_conflict(project: Path, fakes: Path) -> None:
    repository(project)
    configure(project, claude=2, retries=0, more=WORKTREE)
    ok("add", "Create NOTES.md with alpha")
    ok("add", "Create NOTES.md with beta")
    ok("add", "Create SUMMARY.md", "--after", "task_001,task_002")
    run_all(expect=1)
    joined = task(3)
    assert joined["status"] == "failed"
    assert (
        joined["error"]
        == "cannot start task_003 from the merge of orchestrate/task_001 and orchestrate/task_002: they conflict in NOTES.md"
    )
    assert not (project / ".orchestrate/worktrees/task_003").exists()
    assert "orchestrate/task_003" not in git("branch", "--list")  # a retry merges afresh


def _finished(shape: dict[str, Any]) -> float:
    from datetime import datetime

    return datetime.fromisoformat(shape["finished_at"]).timestamp()


def test_tasks_tree_shows_the_plan_under_its_parent(project: Path) -> None:
    ok("add", "--plan", "plan it")
    ok("add", "unrelated")
    env = {"ORCHESTRATE_TASK": "task_001"}
    assert orchestrate("add", "part one", env=env).stdout == "task_003\n"
    assert orchestrate("add", "part two", "--parent", "task_003").stdout == "task_004\n"
    lines = ok("tasks", "--tree").splitlines()
    ids = [line.split()[0] for line in lines[1:]]
    assert ids == ["task_001", "task_003", "task_004", "task_002"]
    assert lines[1].startswith("task_001") and lines[2].startswith("  task_003") and lines[3].startswith("    task_004")
    assert "[plan] plan it" in lines[1]
    roots = json.loads(ok("tasks", "--tree", "--json"))
    assert [r["id"] for r in roots] == ["task_001", "task_002"]
    assert roots[0]["children"][0]["id"] == "task_003"
    assert roots[0]["children"][0]["children"][0]["id"] == "task_004"
    assert roots[1]["children"] == []


def test_an_agents_cli_reaches_the_heads_queue_from_any_directory(project: Path, tmp_path_factory: Any) -> None:
    (project / "config.yaml").write_text("task_queue: {database: queue/work.db}\n")
    (project / "queue").mkdir()
    ok("add", "the running task")
    elsewhere = tmp_path_factory.mktemp("worktree")
    env = {
        "ORCHESTRATE_DB": str(project / "queue/work.db"),
        "ORCHESTRATE_CONFIG": str(project / "config.yaml"),
        "ORCHESTRATE_TASK": "task_001",
    }
    for args in (["add", "a follow-up", "--after", "task_001"], ["tasks"], ["show", "2"], ["status"]):
        result = subprocess.run([ORCHESTRATE, *args], cwd=elsewhere, env={**os.environ, **env}, capture_output=True)
        assert result.returncode == 0, (args, result.stderr)
    assert list(elsewhere.iterdir()) == []  # no queue, no runtime directory made there
    added = tasks_json()[1]
    assert (added["parent"], added["depends_on"]) == ("task_001", ["task_001"])


def test_a_missing_config_named_by_the_environment_means_the_defaults_there(project: Path) -> None:
    """A head run without a config.yaml still names one for its agents: the defaults of its project."""
    ok("add", "x")
    sub = project / "sub"
    sub.mkdir()
    env = {**os.environ, "ORCHESTRATE_CONFIG": str(project / "config.yaml")}
    result = subprocess.run([ORCHESTRATE, "tasks", "--json"], cwd=sub, env=env, capture_output=True, text=True)
    assert [t["id"] for t in json.loads(result.stdout)] == ["task_001"]
    named = orchestrate("--config", "nope.yaml", "status")
    assert (named.returncode, named.stderr) == (2, "orchestrate: nope.yaml: no such configuration file\n")


def test_the_subtask_limit_stops_a_runaway_planner_with_an_error_it_reads(project: Path, planner_path: Path) -> None:
    configure(project, retries=0, more="")
    with (project / "config.yaml").open("a") as f:
        f.write("  max_subtasks: 2\n")
    ok("add", "--plan", "Plan too much [fake:subtasks=3]")
    result = run_all(expect=0)
    assert "all 3 tasks completed" in result.stdout  # the planner and the two parts it could queue
    answer = task(1)
    output = (project / answer["output_file"]).read_text()
    assert "`orchestrate add` failed: orchestrate: task_001 may queue at most 2 subtasks" in output
    assert "task_queue.max_subtasks" in output
    assert task(1)["children"] == ["task_002", "task_003"]


def test_parent_errors_are_one_line_and_add_nothing(project: Path) -> None:
    ok("add", "x")
    for env, args, expected in (
        ({}, ["--parent", "task_009"], "orchestrate: task_009 does not exist, so it cannot be a parent"),
        ({"ORCHESTRATE_TASK": "task_042"}, [], "orchestrate: task_042 does not exist, so it cannot be a parent"),
        ({}, ["--parent", "nope"], "orchestrate: 'nope' is not a task id"),
    ):
        result = orchestrate("add", "child", *args, env=env)
        assert result.returncode != 0 and result.stderr.startswith(expected), result.stderr
        assert result.stderr.count("\n") == 1
    assert len(tasks_json()) == 1


def test_a_task_file_plans_and_names_a_final_task_after_all_the_others(project: Path) -> None:
    (project / "tasks.yaml").write_text(
        "- {description: plan the rest, plan: true}\n"
        "- {id: b, description: second}\n"
        "- {description: third}\n"
        "- {description: check it all, depends_on: all}\n"
    )
    ok("add", "-f", "tasks.yaml")
    found = tasks_json()
    assert found[0]["plan"] and not found[1]["plan"]
    assert found[3]["depends_on"] == ["task_001", "task_002", "task_003"]
    (project / "bad.yaml").write_text("- {description: x, plan: yes please}\n")
    result = orchestrate("add", "-f", "bad.yaml")
    assert result.returncode == 2 and "plan must be true or false" in result.stderr
    (project / "two.yaml").write_text("- {description: a, depends_on: all}\n- {description: b, depends_on: all}\n")
    result = orchestrate("add", "-f", "two.yaml")
    assert result.returncode == 2 and "dependency cycle" in result.stderr
    assert len(tasks_json()) == 4


def test_pause_holds_claiming_across_a_restart_and_resume_lets_it_go_on(project: Path, fakes: Path) -> None:
    configure(project, retries=0)
    ok("add", "first")
    assert ok("pause").startswith("paused: the head claims nothing new")
    assert json.loads(ok("status", "--json"))["paused"] is True
    assert "paused   since" in ok("status")
    held = run_all(expect=1)  # a paused queue: `run` ends at once rather than wait, claiming nothing
    assert "task_001" in held.stderr and not started(fakes)
    assert "left pending: claiming is held: the queue is paused" in held.stderr
    assert "task_001 did not run: the queue is paused (`orchestrate resume` lets it run)" in held.stderr
    assert task(1)["status"] == "pending"
    assert ok("resume").startswith("resumed after")
    assert ok("resume") == "the queue was not paused\n"
    run_all()
    assert task(1)["status"] == "completed" and not json.loads(ok("status", "--json"))["paused"]


def test_pause_lets_running_tasks_finish_and_claims_nothing_after(project: Path, fakes: Path) -> None:
    configure(project, retries=0)
    ok("add", "slow [fake:sleep=2]")
    ok("start")
    wait_until(lambda: started(fakes), message="the first agent to start")
    assert "1 running task(s) finish" in ok("pause")
    ok("add", "queued while paused")
    assert wait_until(lambda: task(1)["status"] == "completed", timeout=60)
    head_log = project / ".orchestrate/head.log"
    wait_until(lambda: "paused: claiming nothing" in head_log.read_text(), message="the head to see the pause")
    # the slot is free and the beat has seen the pause: a task it would claim stays pending
    wait_until(lambda: json.loads(ok("agents", "--json"))[0]["state"] == "idle", message="the slot to free")
    assert task(2)["status"] == "pending" and len(started(fakes)) == 1
    ok("resume")
    assert wait_until(lambda: task(2)["status"] == "completed", timeout=60)
    ok("stop")


# Pure logic: the tree and its JSON.


def _template() -> Task:
    from orchestrate import api

    with api.opened(Path(":memory:")) as conn:
        (new,) = api.add_tasks(conn, [NewTask("a task")])
        return api.get_task(conn, new)


TEMPLATE = _template()


def _task(task_id: int, parent: int | None = None) -> Task:
    return TEMPLATE._replace(id=task_id, parent=parent)


def test_tree_orders_depth_first_and_roots_a_task_whose_parent_is_not_shown() -> None:
    tasks = [_task(1), _task(2, 1), _task(3), _task(4, 2), _task(5, 1), _task(6, 99)]
    assert [(d, t.id) for d, t in render.tree(tasks)] == [(0, 1), (1, 2), (2, 4), (1, 5), (0, 3), (0, 6)]
    nested = task_tree(render.tree(tasks))
    assert [n["id"] for n in nested] == ["task_001", "task_003", "task_006"]
    assert [c["id"] for c in nested[0]["children"]] == ["task_002", "task_005"]
    assert nested[0]["children"][0]["children"][0]["id"] == "task_004"


def test_a_deep_plan_does_not_recurse() -> None:
    tasks = [_task(1)] + [_task(n, n - 1) for n in range(2, 3000)]
    assert render.tree(tasks)[-1][0] == 2998
