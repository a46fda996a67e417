"""The head node end to end: a real head process, the installed CLI, and the fake agent CLIs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import ORCHESTRATE, alive, live_pids, orchestrate, wait_until

CONFIG = """\
agents:
  claude:
    max_instances: {claude}
    env: {{IS_SANDBOX: "1"}}
{more}
task_queue:
  retry_delay_seconds: 0.2
  kill_grace_seconds: 1
  max_retries: {retries}
"""


def configure(project: Path, claude: int = 1, retries: int = 1, more: str = "") -> None:
    (project / "config.yaml").write_text(CONFIG.format(claude=claude, retries=retries, more=more))


def ok(*args: str) -> str:
    result = orchestrate(*args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def task(ref: str | int) -> dict[str, Any]:
    return json.loads(ok("show", str(ref), "--json"))  # type: ignore[no-any-return]


def status() -> dict[str, Any]:
    return json.loads(ok("status", "--json"))  # type: ignore[no-any-return]


def wait_for(ref: str | int, *states: str, timeout: float = 60) -> dict[str, Any]:
    return wait_until(
        lambda: (t := task(ref))["status"] in states and t, timeout=timeout, message=f"task {ref} to be {states}"
    )


def runs(record: Path) -> list[dict[str, Any]]:
    """What the fake agents recorded: one line when each starts, one when each finishes."""
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines() if line.strip()]


def started(record: Path) -> list[dict[str, Any]]:
    return [r for r in runs(record) if "argv" in r]


def finished_ok(record: Path) -> list[dict[str, Any]]:
    return [r for r in runs(record) if r.get("done")]


def no_agent_left(project: Path) -> bool:
    return not live_pids(f"ORCHESTRATE_QUEUE={project}".encode())


def head_pid() -> int:
    pid = status()["head"]["pid"]
    assert isinstance(pid, int)
    return pid


def test_basic_flow_acceptance_1(project: Path, fakes: Path) -> None:
    configure(project)
    out = ok("start")
    assert "pid" in out and "head.log" in out
    assert status()["head"]["running"] is True
    assert ok("add", "Create README.md with project description").strip() == "task_001"
    assert task(1)["status"] in ("pending", "running", "completed")
    done = wait_for(1, "completed")
    assert done["agent"] == "claude-1" and done["attempts"] == 1
    assert done["cost_usd"] is not None and done["output_file"] == "context/agent_outputs/task_001_output.md"
    output = (project / done["output_file"]).read_text()
    assert "task_001" in output and "README.md" in output
    assert (project / "README.md").exists()
    assert "completed" in ok("status")
    pid = head_pid()
    assert "stopped" in ok("stop")
    assert not alive(pid)
    assert status()["head"]["running"] is False
    assert no_agent_left(project)
    [run] = started(fakes)
    assert run["cli"] == "claude" and run["cwd"] == str(project)
    assert run["argv"][-6:-2] == ["-p", "--output-format", "stream-json", "--verbose"]
    assert run["stdin_was"] == "devnull" and run["env"]["ORCHESTRATE_TASK"] == "task_001"


def test_parallel_agents_acceptance_2(project: Path, fakes: Path) -> None:
    configure(project)
    ok("start", "--agents", "claude:2,codex:2")
    for n in range(1, 5):
        ok("add", f"Task {n}: Create module_{n}.py [fake:sleep=3]")
    slots = wait_until(
        lambda: (
            len([a for a in json.loads(ok("agents", "--json")) if a["state"] == "busy"]) == 4
            and json.loads(ok("agents", "--json"))
        ),
        message="four busy agents",
    )
    assert sorted(a["id"] for a in slots) == ["claude-1", "claude-2", "codex-1", "codex-2"]
    assert all(a["pid"] is None or isinstance(a["pid"], int) for a in slots)
    active = json.loads(ok("tasks", "--status", "active", "--json"))
    assert len(active) >= 2
    for n in range(1, 5):
        wait_for(n, "completed")
    assert sorted(r["cli"] for r in started(fakes)) == ["claude", "claude", "codex", "codex"]
    ok("stop")
    assert no_agent_left(project)


def test_error_recovery_acceptance_3(project: Path, fakes: Path) -> None:
    configure(project, retries=1)
    ok("start")
    ok("add", "Invalid task: @#$%^&*()")
    failed = wait_for(1, "failed")
    assert failed["attempts"] == 2  # the first try and one retry
    assert "API Error: 400" in failed["error"]
    assert "task_001" in ok("status") and "API Error" in ok("status")
    assert [t["id"] for t in json.loads(ok("tasks", "--status", "failed", "--json"))] == ["task_001"]
    assert "pending again" in ok("retry", "task_001")
    again = wait_for(1, "failed")
    assert again["attempts"] == 2
    assert len(started(fakes)) == 4
    ok("stop")


def test_the_retry_prompt_carries_the_previous_error(project: Path, fakes: Path) -> None:
    configure(project, retries=2)
    # A fresh session each time (tests/test_resume.py has the retries that continue one).
    (project / "config.yaml").write_text(
        (project / "config.yaml").read_text().replace("    max_instances", "    resume: false\n    max_instances")
    )
    ok("start")
    ok("add", "Flaky work [fake:fail-times=1]")
    done = wait_for(1, "completed")
    assert done["attempts"] == 2
    first, second = started(fakes)
    assert "previous attempt failed" not in first["prompt"]
    assert "previous attempt failed" in second["prompt"] and "fake failure" in second["prompt"]
    ok("stop")


def test_run_exits_when_the_queue_is_done(project: Path, fakes: Path) -> None:
    configure(project, retries=0, more="  codex: {max_instances: 2}")
    for n in range(3):
        ok("add", f"quick {n}")
    result = orchestrate("run")
    assert result.returncode == 0, result.stderr
    assert status()["counts"]["completed"] == 3
    ok("add", "Invalid task")
    ok("add", "waits for the failure", "--after", "4")
    result = orchestrate("run")
    assert result.returncode == 1
    assert task(4)["status"] == "failed" and task(5)["status"] == "pending"
    assert no_agent_left(project)


def test_a_second_start_is_refused_and_a_stale_pid_is_not_a_head(project: Path, fakes: Path) -> None:
    configure(project)
    ok("start")
    second = orchestrate("start")
    assert second.returncode == 1 and "already running" in second.stderr
    pid = head_pid()
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive(pid), message="the head to die")
    assert (project / ".orchestrate" / "head.pid").exists()  # the crash left its pid file
    wait_until(lambda: status()["head"]["running"] is False, message="status to see the head gone")
    assert "not running" in ok("status")
    ok("start")
    assert head_pid() != pid
    ok("stop")


def test_kill_9_mid_run_then_start_finishes_every_task_once(project: Path, fakes: Path) -> None:
    configure(project, claude=3)
    ok("start")
    for n in range(6):
        ok("add", f"slow {n} [fake:sleep=2]")
    wait_until(lambda: len(started(fakes)) >= 3, message="three agents running")
    first_agents = [r["pid"] for r in started(fakes)]
    pid = head_pid()
    os.kill(pid, signal.SIGKILL)
    ok("start")
    assert not any(alive(p) for p in first_agents)  # the new head killed the dead one's agents first
    for n in range(1, 7):
        done = wait_for(n, "completed")
        assert done["attempts"] == 1  # the interrupted run was not counted
    finished = [r["pid"] for r in finished_ok(fakes)]
    by_task = [r["env"]["ORCHESTRATE_TASK"] for r in started(fakes) if r["pid"] in finished]
    assert sorted(by_task) == [f"task_{n:03d}" for n in range(1, 7)]  # each completed exactly once
    ok("stop")
    assert no_agent_left(project)


def test_stop_returns_running_tasks_unspent(project: Path, fakes: Path) -> None:
    configure(project, claude=2)
    ok("start")
    ok("add", "long one [fake:hang]")
    ok("add", "stubborn one [fake:ignore-term]")
    wait_until(lambda: len(started(fakes)) == 2, message="both agents started")
    pids = [r["pid"] for r in started(fakes)]
    ok("stop")
    assert not any(alive(p) for p in pids)
    for n in (1, 2):
        t = task(n)
        assert (t["status"], t["attempts"], t["agent"]) == ("pending", 0, None)
    assert no_agent_left(project)


def test_stop_wait_lets_running_tasks_finish(project: Path, fakes: Path) -> None:
    configure(project)
    ok("start")
    ok("add", "finish me [fake:sleep=1.5]")
    wait_until(lambda: started(fakes), message="the agent to start")
    ok("stop", "--wait")
    assert task(1)["status"] == "completed"


def test_a_timeout_interrupts_then_kills(project: Path, fakes: Path) -> None:
    configure(project, retries=0)
    ok("start")
    ok("add", "never ends [fake:ignore-term]", "--timeout", "0.02")
    failed = wait_for(1, "failed")
    assert "timed out after 1.2 s" in failed["error"]
    [run] = started(fakes)
    assert not alive(run["pid"])
    ok("stop")


def test_cancel_kills_a_running_agent(project: Path, fakes: Path) -> None:
    configure(project)
    ok("start")
    ok("add", "hangs [fake:hang]")
    wait_until(lambda: started(fakes), message="the agent to start")
    [run] = started(fakes)
    # the agent leads its own process group; the heartbeat records it for `show` and `agents`
    wait_until(lambda: f"pid {run['pid']}" in ok("show", "1"), message="the task to show its pid")
    [slot] = status()["agents"]
    assert slot["pid"] == run["pid"] == os.getpgid(run["pid"])
    ok("cancel", "1")
    wait_until(lambda: not alive(run["pid"]), timeout=5, message="the cancelled agent to die")
    assert task(1)["status"] == "cancelled"
    ok("stop")


def test_a_rate_limit_cools_the_agent_and_spends_no_attempt(project: Path, fakes: Path) -> None:
    configure(project, more="  codex: {}")
    ok("start")
    ok("add", "limited [fake:ratelimit]", "--agent", "codex")
    wait_until(
        lambda: any(a["state"] == "cooling" for a in json.loads(ok("agents", "--json"))), message="codex to be cooling"
    )
    t = task(1)
    assert (t["status"], t["attempts"]) == ("pending", 0)
    assert "429" in t["error"]
    assert len(started(fakes)) == 1  # it waits for codex; claude does not take it
    ok("cancel", "1")
    ok("stop")


def test_an_agent_missing_from_path_is_unavailable(project: Path, fakes: Path) -> None:
    configure(project, more='  gemini: {command: "gemini-not-installed --yolo"}')
    ok("start")
    agents = wait_until(lambda: json.loads(ok("agents", "--json")), message="slots")
    gemini = next(a for a in agents if a["id"] == "gemini-1")
    assert gemini["state"] == "unavailable"
    assert "unavailable gemini-1: 'gemini-not-installed' is not installed or not on PATH" in ok("status")
    ok("add", "prefers the missing one", "--agent", "gemini")
    assert wait_for(1, "completed")["agent"] == "claude-1"
    assert status()["head"]["running"] is True
    ok("stop")


@pytest.mark.parametrize("cli", ["claude", "codex", "gemini"])
def test_a_300_kb_prompt_travels_on_stdin(project: Path, fakes: Path, cli: str) -> None:
    configure(project, more=f"  {cli}: {{}}" if cli != "claude" else "")
    big = "Refactor this:\n" + "x" * 300_000
    (project / "tasks.yaml").write_text(json.dumps([{"description": big, "preferred_agent": cli}]))
    ok("add", "--file", "tasks.yaml")
    result = orchestrate("run")
    assert result.returncode == 0, result.stderr
    [run] = started(fakes)
    assert run["cli"] == cli and run["prompt_source"] == "stdin" and "x" * 300_000 in run["prompt"]


def test_the_root_refusal_says_how_to_fix_it(project: Path, fakes: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        pytest.skip("claude refuses --dangerously-skip-permissions only as root")
    monkeypatch.delenv("IS_SANDBOX")
    (project / "config.yaml").write_text("task_queue: {max_retries: 0}\n")
    ok("add", "anything")
    assert orchestrate("run").returncode == 1
    assert "IS_SANDBOX" in task(1)["error"]


def test_logs_follow_a_running_agent(project: Path, fakes: Path) -> None:
    configure(project)
    ok("start")
    ok("add", "progress please [fake:sleep=2]")
    wait_until(lambda: started(fakes), message="the agent to start")
    follower = subprocess.Popen([ORCHESTRATE, "logs", "-f", "1"], stdout=subprocess.PIPE, text=True)
    out, _ = follower.communicate(timeout=60)
    assert follower.returncode == 0
    assert "attempt 1 on claude-1" in out and '"type":"result"' in out.replace(" ", "")
    ok("stop")


def test_strays_in_their_own_session_are_swept(project: Path, fakes: Path) -> None:
    configure(project)
    ok("start")
    ok("add", "leaves a child behind [fake:child]")
    wait_for(1, "completed")
    children = project / "fake_children.txt"
    pids = [int(p) for p in children.read_text().split()]
    assert pids
    wait_until(lambda: not any(alive(p) for p in pids), timeout=10, message="the detached child to be killed")
    ok("stop")


def test_a_command_agent_over_its_memory_limit_fails(project: Path, fakes: Path) -> None:
    hog = '["python3", "-c", "import time; x = bytearray(300 * 2**20); x[::4096] = b\\"1\\" * len(x[::4096]); time.sleep(60)"]'
    (project / "config.yaml").write_text(
        f"agents:\n  hog:\n    type: command\n    command: {hog}\n"
        "task_queue: {max_retries: 0, kill_grace_seconds: 1}\nperformance: {max_memory_mb: 100}\n"
    )
    ok("add", "eat memory")
    assert orchestrate("run").returncode == 1
    assert "max_memory_mb" in task(1)["error"]


def test_a_command_agent_that_ignores_its_prompt_succeeds(project: Path) -> None:
    (project / "config.yaml").write_text('agents:\n  t:\n    type: command\n    command: ["true"]\n')
    ok("add", "x" * 1000)
    assert orchestrate("run").returncode == 0
    assert task(1)["status"] == "completed"
