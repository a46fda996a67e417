"""Work that travels between the machines of a PostgreSQL queue, against a real server: each
attempt's task branch is pushed to the remote and fetched by the machine that runs what comes
next, and merge: auto lands every machine's work on the remote's branch, one merge at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import wait_until
from machines import git, machine, run_in, status, task

ONE = "task_001"


def _completed(where: Path, count: int) -> bool:
    return bool(status(where)["counts"]["completed"] == count)


def test_a_dependency_run_on_another_machine_is_where_the_task_starts(project: Path, machines: Any) -> None:
    a = machine(project, "a", "echo 'from a' > one.txt && git add one.txt && git commit -qm 'one, on a'", slots=1)
    b = machine(project, "b", "cat one.txt > seen.txt", slots=1)  # fails if task 1's file is not there
    assert run_in(a, "add", "write one.txt", "--agent", "a").returncode == 0
    machines(a)
    wait_until(lambda: _completed(a, 1), message="a completes task 1")
    assert run_in(a, "stop").returncode == 0  # so that b's head, alone, runs task 2
    assert run_in(b, "add", "read one.txt", "--after", "1", "--agent", "b", "--max-retries", "0").returncode == 0
    machines(b)
    wait_until(lambda: task(b, 2)["status"] in ("completed", "failed"), message="b runs task 2")
    shown = task(b, 2)
    assert shown["status"] == "completed", shown["error"]
    assert shown["agent"] == "b-1"
    assert git(b, "show", "orchestrate/task_002:seen.txt") == "from a\n"
    assert "one, on a" in git(project / "remote.git", "log", "--format=%s", "orchestrate/task_002")


def test_a_retry_on_another_machine_continues_from_the_pushed_branch(project: Path, machines: Any) -> None:
    a = machine(project, "a", "echo 'half done' > a.txt && git add a.txt && git commit -qm 'a, half' && exit 1")
    b = machine(project, "b", "cat a.txt > b.txt")  # fails unless it starts from a's commit
    assert run_in(a, "add", "the work", "--max-retries", "0").returncode == 0
    machines(a)
    wait_until(lambda: task(a, 1)["status"] == "failed", message="a's attempt fails for good")
    assert run_in(a, "stop").returncode == 0
    assert git(project / "remote.git", "log", "-1", "--format=%s", f"orchestrate/{ONE}") == "a, half\n"
    assert run_in(b, "retry", "1").returncode == 0
    machines(b)
    wait_until(lambda: task(b, 1)["status"] in ("completed", "failed"), message="b runs the retry")
    shown = task(b, 1)
    assert shown["status"] == "completed", shown["error"]
    assert [r["agent"].split("-")[0] for r in shown["runs"]] == ["a", "b"]
    assert git(b, "show", f"orchestrate/{ONE}:b.txt") == "half done\n"
    pushed = git(project / "remote.git", "log", "--format=%s", f"orchestrate/{ONE}").splitlines()
    assert pushed[0].startswith(f"{ONE}: ") and pushed[1] == "a, half"  # b's commit, on a's


def test_merge_auto_on_two_machines_lands_every_task_on_the_remote(project: Path, machines: Any) -> None:
    agent = 'sleep 1; echo "$ORCHESTRATE_TASK" > "$ORCHESTRATE_TASK.txt"'
    where = [machine(project, name, agent, slots=1, more="merge: auto\n") for name in ("a", "b")]
    for i in range(1, 5):
        assert run_in(where[0], "add", f"write file {i}").returncode == 0
    for each in where:
        machines(each)
    wait_until(lambda: _completed(where[0], 4), timeout=30, message="four tasks completed")
    shown = [task(where[0], i) for i in range(1, 5)]
    assert [t["error"] for t in shown] == [None] * 4  # each merged, none "completed but not merged"
    assert {t["agent"] for t in shown} == {"a-1", "b-1"}  # both machines merged
    remote = project / "remote.git"
    files = git(remote, "ls-tree", "--name-only", "main").split()
    assert {f"task_00{i}.txt" for i in range(1, 5)} <= set(files)
    subjects = git(remote, "log", "--format=%s", "main")
    assert all(f"task_00{i}: write file {i}" in subjects for i in range(1, 5))
    for each in where:  # each machine's checkout is where it pushed the remote to, or behind it
        tip = git(each, "rev-parse", "main").strip()
        assert git(remote, "merge-base", "--is-ancestor", tip, "main") == ""
