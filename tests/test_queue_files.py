"""A queue's files are its own: a second queue in one project is refused, and a head whose queue
file is deleted under it stops instead of running on unseen beside the next (issue 13, items 3, 4)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import alive, orchestrate, wait_until
from test_head import head_pid, ok, task, wait_for
from test_reaping import command_agent


def test_a_second_queue_in_one_project_is_refused_and_loses_nothing(project: Path) -> None:
    command_agent(project, "cat >/dev/null; echo answered")
    ok("--db", "a.db", "add", "first queue's task")
    assert orchestrate("--db", "a.db", "run").returncode == 0
    log = (project / ".orchestrate/logs/task_001.log").read_text()
    ok("--db", "b.db", "add", "second queue's task")
    for command in ("run", "start"):
        result = orchestrate("--db", "b.db", command)
        assert result.returncode != 0, (command, result.stdout, result.stderr)
        said = [line for line in result.stderr.splitlines() if "belong to the queue" in line]
        assert said and str(project / "a.db") in said[0] and "Traceback" not in result.stderr, result.stderr
    assert json.loads(ok("--db", "b.db", "show", "1", "--json"))["status"] == "pending"  # nothing lost
    assert (project / ".orchestrate/logs/task_001.log").read_text() == log  # a's log untouched
    assert orchestrate("--db", "a.db", "run").returncode == 0  # the project's own queue still runs


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_head_whose_queue_file_is_deleted_stops_with_its_agents(project: Path, how: str) -> None:
    command_agent(project, "echo $$ > agent.pid; exec sleep 120")
    ok("start")
    ok("add", "runs until its queue is gone")
    wait_for(1, "running")
    old = head_pid()
    agent = int(wait_until(lambda: (project / "agent.pid").exists() and (project / "agent.pid").read_text()))
    if how == "replaced":  # another file renamed over it: the path lives on, the head's file does not
        (project / "other.db").write_bytes(b"")
        os.replace(project / "other.db", project / "tasks.db")
    for suffix in ("-wal", "-shm") if how == "replaced" else ("", "-wal", "-shm"):
        (project / f"tasks.db{suffix}").unlink(missing_ok=True)
    wait_until(lambda: not alive(old), timeout=15, message="the head to stop once its queue file is gone")
    assert not alive(agent)
    ok("add", "a new queue")
    ok("start")
    assert head_pid() != old
    assert task(1)["description"] == "a new queue"
    ok("stop")
