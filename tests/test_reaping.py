"""No process outlives its task, however it hides, and an agent's exit ends its run even when a
child it left still holds its output (issue 13, items 5 and 6)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import alive, wait_until
from test_head import head_pid, ok, task, wait_for

# A descendant that leaves the agent's session, clears its environment (so no ORCHESTRATE_* marks
# it) and is orphaned by a double fork; it writes its pid to `escaped.pid` and sleeps. The agent
# waits for that, so the escape is complete before the agent goes on.
ESCAPE = (
    "setsid env -i sh -c '(sleep 300 & echo $! > escaped.pid) &' </dev/null >/dev/null 2>&1;"
    " until [ -s escaped.pid ]; do sleep 0.01; done"
)


def command_agent(project: Path, script: str, instances: int = 1) -> None:
    agent = {"type": "command", "command": ["sh", "-c", script], "max_instances": instances}
    config = {"agents": {"sh": agent}, "task_queue": {"max_retries": 0, "kill_grace_seconds": 1}}
    (project / "config.yaml").write_text(json.dumps(config) + "\n")  # JSON is YAML


def escaped(project: Path) -> int:
    path = project / "escaped.pid"
    text = wait_until(lambda: path.exists() and path.read_text().strip(), message="the escaped descendant")
    return int(text)


def zombies_of(pid: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except (OSError, ValueError):
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] == "Z" and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def test_a_descendant_that_clears_its_environment_dies_with_its_task(project: Path) -> None:
    command_agent(project, f"{ESCAPE}; echo done")
    ok("start")
    head = head_pid()
    try:
        ok("add", "leave something behind")
        assert wait_for(1, "completed", "failed")["status"] == "completed"
        orphan = escaped(project)
        wait_until(lambda: not alive(orphan), timeout=10, message="the orphan to be killed")
        wait_until(lambda: not zombies_of(head), timeout=10, message="the head to reap what it adopted")
    finally:
        ok("stop")


def test_a_running_agents_escaped_descendant_dies_at_stop(project: Path) -> None:
    command_agent(project, f"{ESCAPE}; sleep 60")
    ok("start")
    ok("add", "still running when the head stops")
    orphan = escaped(project)
    assert wait_for(1, "running")["status"] == "running"
    assert alive(orphan)  # its task still runs: nobody may kill it yet
    ok("stop")
    wait_until(lambda: not alive(orphan), timeout=10, message="the orphan to die with the head")


def test_an_orphan_of_a_running_task_is_not_killed_when_another_task_ends(project: Path) -> None:
    command_agent(project, f"case $(cat) in *slow*) {ESCAPE}; sleep 5;; esac; echo done", instances=2)
    ok("start")
    try:
        ok("add", "slow")
        orphan = escaped(project)
        ok("add", "quick")
        assert wait_for(2, "completed")["status"] == "completed"
        assert alive(orphan), "the running task's orphan was killed when another task ended"
        wait_for(1, "completed")
        wait_until(lambda: not alive(orphan), timeout=10, message="the orphan to die once its task ended")
    finally:
        ok("stop")


def test_an_agent_that_exits_leaving_a_child_on_its_stdout_ends_its_run(project: Path) -> None:
    # the first child stays in the agent's group; the second leaves it, still holding the pipes
    held = "setsid sh -c 'echo > held; exec sleep 301' & until [ -e held ]; do sleep 0.01; done"
    command_agent(project, f"sleep 300 & {held}; echo finished")
    ok("add", "exit early")
    ok("start")
    try:
        done = wait_for(1, "completed", "failed", timeout=30)
        assert done["status"] == "completed", done["error"]
        assert "finished" in (project / task(1)["output_file"]).read_text()
    finally:
        ok("stop")
