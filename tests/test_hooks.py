"""`hooks:` end to end: a real head, the installed CLI and the fake agent CLIs; each hook records
what it was told (stdin, its environment, where it ran) in hooks.jsonl. And the pure decisions:
which events an attempt gives, when the queue is newly idle, which cancellations are new."""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

from conftest import alive, live_pids, orchestrate, wait_until
from test_head import head_pid, ok, status, wait_for

from orchestrate import builtin, configfile
from orchestrate.hooks import Cancellations, Hooks, IdleWatch, attempt_events, environment, failure

CONFIG = """\
agents:
  claude:
    env: {{IS_SANDBOX: "1"}}
{more}
task_queue:
  retry_delay_seconds: 0.2
  kill_grace_seconds: 1
  max_retries: {retries}
hooks: {hooks}
hooks_timeout_seconds: {timeout}
"""
RECORDER = """\
import json, os, sys
said = sys.stdin.read()
env = {k: v for k, v in os.environ.items() if k.startswith("ORCHESTRATE_")}
got = {"stdin": json.loads(said), "env": env, "cwd": os.getcwd(), "pid": os.getpid()}
with open("hooks.jsonl", "a") as f:
    f.write(json.dumps(got) + "\\n")
"""
RECORD = f"{shlex.quote(sys.executable)} record.py"  # run from the project directory, as every hook is


def configure(project: Path, hooks: dict[str, Any], timeout: float = 30, retries: int = 1, more: str = "") -> None:
    (project / "record.py").write_text(RECORDER)
    text = CONFIG.format(more=more, retries=retries, hooks=json.dumps(hooks), timeout=timeout)
    (project / "config.yaml").write_text(text)


def recorded(project: Path) -> list[dict[str, Any]]:
    path = project / "hooks.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def said(project: Path) -> list[tuple[str, str | None]]:
    """(event, task) of each hook that ran, in order."""
    return [(r["env"]["ORCHESTRATE_EVENT"], r["env"].get("ORCHESTRATE_TASK")) for r in recorded(project)]


def listed() -> dict[str, dict[str, Any]]:
    return {t["id"]: t for t in json.loads(ok("tasks", "--json"))}


def pids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def test_task_completed_and_failed_get_the_tasks_json_and_where_its_queue_is(project: Path, fakes: Path) -> None:
    """A failure to be retried is no task_failed; the head's own queue marker is not passed on, which
    the head's sweep would kill the hook for, nor a task or agent it was itself started with."""
    configure(project, {"task_completed": RECORD, "task_failed": [RECORD]})
    ok("add", "Write notes")
    ok("add", "Invalid task")  # fails twice: once to be retried, then for good
    inherited = {
        "ORCHESTRATE_QUEUE": str(project / "tasks.db"),
        "ORCHESTRATE_TASK": "task_999",
        "ORCHESTRATE_AGENT": "x",
    }
    assert orchestrate("run", env=inherited, timeout=120).returncode == 1
    assert said(project) == [("task_completed", "task_001"), ("task_failed", "task_002")]
    tasks = listed()
    for r in recorded(project):
        assert r["stdin"] == tasks[r["env"]["ORCHESTRATE_TASK"]]  # the shape `tasks --json` prints
        assert r["cwd"] == str(project)
        assert set(r["env"]) == {"ORCHESTRATE_EVENT", "ORCHESTRATE_TASK", "ORCHESTRATE_DB", "ORCHESTRATE_CONFIG"}
        assert (r["env"]["ORCHESTRATE_DB"], r["env"]["ORCHESTRATE_CONFIG"]) == (
            str(project / "tasks.db"),
            str(project / "config.yaml"),
        )
    assert recorded(project)[1]["stdin"]["attempts"] == 2


def test_a_cancellation_fires_once_pending_or_running_and_none_from_before_the_head(project: Path, fakes: Path) -> None:
    configure(project, {"task_cancelled": RECORD})
    ok("add", "Cancelled before the head started")
    ok("cancel", "1")
    ok("pause")  # the head never runs task 2
    ok("start")
    ok("add", "Cancelled while pending")
    ok("cancel", "2")
    wait_until(lambda: said(project) == [("task_cancelled", "task_002")], message="task 2's hook")
    ok("resume")
    ok("add", "Cancelled while running [fake:hang]")
    wait_for(3, "running")
    ok("cancel", "3")
    wait_until(lambda: len(said(project)) == 2, message="task 3's hook")
    ok("stop")
    assert said(project) == [("task_cancelled", "task_002"), ("task_cancelled", "task_003")]
    assert [r["stdin"]["status"] for r in recorded(project)] == ["cancelled", "cancelled"]


def test_a_rate_limit_fires_agent_cooling_with_the_agents_name(project: Path, fakes: Path) -> None:
    configure(project, {"agent_cooling": RECORD, "task_completed": RECORD})
    ok("add", "Busy work [fake:ratelimit=1] [fake:fail-times=1]")
    assert orchestrate("run", timeout=120).returncode == 0
    assert said(project) == [("agent_cooling", "task_001"), ("task_completed", "task_001")]
    cooling = recorded(project)[0]
    assert cooling["env"]["ORCHESTRATE_AGENT"] == "claude"
    assert (cooling["stdin"]["status"], cooling["stdin"]["attempts"]) == ("pending", 0)  # as recorded: back, unspent


def test_a_refused_login_fires_agent_unavailable_once_for_the_agent(project: Path, fakes: Path) -> None:
    """Both codex slots find the login refused: one hook, for codex; claude then does both tasks."""
    configure(project, {"agent_unavailable": RECORD}, more="  codex: {max_instances: 2}")
    ok("add", "First login [fake:auth] [fake:fail-times=1]", "--agent", "codex")
    ok("add", "Second login [fake:auth] [fake:fail-times=1]", "--agent", "codex")
    assert orchestrate("run", timeout=120).returncode == 0
    [hook] = recorded(project)
    assert (hook["env"]["ORCHESTRATE_EVENT"], hook["env"]["ORCHESTRATE_AGENT"]) == ("agent_unavailable", "codex")
    assert hook["env"]["ORCHESTRATE_TASK"] in ("task_001", "task_002")
    assert hook["stdin"]["status"] == "pending"


def test_an_agent_whose_program_is_missing_at_start_fires_agent_unavailable(project: Path, fakes: Path) -> None:
    """No attempt finds it: the head marks it unavailable as it starts, and a heartbeat tells the hook."""
    configure(project, {"agent_unavailable": RECORD}, more="  codex: {command: no-such-codex-program}")
    ok("add", "Quick one")
    assert orchestrate("run", timeout=120).returncode == 0
    [hook] = wait_until(lambda: recorded(project), message="the agent_unavailable hook")
    assert (hook["env"]["ORCHESTRATE_AGENT"], "ORCHESTRATE_TASK" in hook["env"]) == ("codex", False)
    assert hook["stdin"]["agent"] == "codex" and "no-such-codex-program" in hook["stdin"]["why"]


def test_queue_idle_fires_once_until_work_comes_and_head_stopped_last(project: Path, fakes: Path) -> None:
    """Neither names a task, even in a head started with one in its environment; both get the counts."""
    configure(project, {"queue_idle": RECORD, "head_stopped": RECORD})
    assert orchestrate("start", env={"ORCHESTRATE_TASK": "task_999"}).returncode == 0
    wait_until(lambda: said(project) == [("queue_idle", None)], message="the empty queue's queue_idle")
    ok("add", "Quick one")
    wait_until(lambda: len(said(project)) == 2, message="queue_idle once the task is done")
    beats = {status()["head"]["heartbeat_at"]}  # the head goes round its loop, idle, a few times
    wait_until(lambda: beats.add(status()["head"]["heartbeat_at"]) or len(beats) > 2, message="two heartbeats")
    ok("add", "Slow one [fake:sleep=1]")
    wait_for(2, "completed")
    wait_until(lambda: len(said(project)) == 3, message="queue_idle once the second task is done")
    ok("stop")
    assert said(project) == [("queue_idle", None)] * 3 + [("head_stopped", None)]
    zero = dict.fromkeys(("pending", "running", "completed", "failed", "cancelled"), 0)
    assert [r["stdin"] for r in recorded(project)] == [{"counts": zero | {"completed": n}} for n in (0, 1, 2, 2)]


def test_a_hook_past_its_timeout_is_killed_logged_once_and_holds_up_nothing(project: Path, fakes: Path) -> None:
    """One ends on SIGTERM, one ignores it and is killed; a firing's commands run one after another."""
    late = ["echo $$ >> late.pids; exec sleep 60", "trap '' TERM; echo $$ >> stubborn.pids; sleep 60"]
    configure(project, {"task_completed": late}, timeout=1)
    ok("start")
    ok("add", "First")
    ok("add", "Second")  # claimed while the first one's hook hangs
    wait_for(2, "completed", timeout=10)
    all_pids = wait_until(
        lambda: len(found := pids(project / "late.pids") + pids(project / "stubborn.pids")) == 4 and found
    )
    wait_until(lambda: not any(alive(p) for p in all_pids), timeout=15, message="the late hooks to be killed")
    assert status()["head"]["running"] is True
    ok("stop")
    log = (project / ".orchestrate/head.log").read_text()
    for command in late:
        assert log.count(f"hooks.task_completed: {command!r} timed out after 1 s and was killed") == 1, log


def test_a_failing_hook_is_logged_once_with_the_end_of_its_stderr(project: Path, fakes: Path) -> None:
    failing = ["echo first >&2; echo boom >&2; exit 3", "no-such-program-here"]
    configure(project, {"task_completed": failing})
    for n in range(3):
        ok("add", f"Task {n}")
    done = orchestrate("run", timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "hooks." in line]
    assert len(lines) == 2, done.stderr
    assert lines[0].endswith(
        "hooks.task_completed: 'echo first >&2; echo boom >&2; exit 3' exited with status 3;"
        " its stderr ended: first | boom (logged once: its later failures are not)"
    )
    assert "'no-such-program-here' exited with status 127; its stderr ended: " in lines[1]


def test_a_hook_that_never_reads_stdin_blocks_nothing(project: Path, fakes: Path) -> None:
    """The task's JSON is over 300 KB, more than a pipe holds: `true` exits unread, `sleep` never
    reads it, and the next command still gets all of it."""
    configure(project, {"task_completed": ["true", "sleep 0.5", RECORD]})
    (project / "tasks.yaml").write_text(json.dumps([{"description": "Big one\n" + "x" * 300_000}]))
    ok("add", "--file", "tasks.yaml")
    done = orchestrate("run", timeout=120)
    assert done.returncode == 0 and "hooks." not in done.stderr, done.stderr
    [hook] = recorded(project)
    assert len(hook["stdin"]["description"]) > 300_000


def test_nothing_a_hook_started_outlives_the_head(project: Path, fakes: Path) -> None:
    """At the stop a task's hook still runs, with a child in the background; head_stopped starts one
    that leaves a child behind and one past its timeout. The head waits out each deadline, then kills."""
    running = "sleep 300 & echo $! > bg.pid; echo $$ > fg.pid; wait"
    stopped = ["sleep 300 & echo $! > child.pid", "echo $$ > slow.pid; exec sleep 300"]
    configure(project, {"task_completed": running, "head_stopped": stopped}, timeout=2)
    marker = f"HOOKS_TEST={project}".encode()  # in the head's environment, so in every hook's
    try:
        assert orchestrate("start", env={"HOOKS_TEST": str(project)}).returncode == 0
        ok("add", "Quick one")
        wait_until(lambda: (project / "fg.pid").exists() and (project / "bg.pid").exists(), message="the task's hook")
        began = time.monotonic()
        ok("stop")  # returns once the head has exited
        assert time.monotonic() - began < 10
        hooks = [pids(project / f"{name}.pid")[0] for name in ("bg", "fg", "child", "slow")]
        assert not any(alive(p) for p in hooks)
        assert not live_pids(marker)
        assert "'echo $$ > slow.pid; exec sleep 300' timed out" in (project / ".orchestrate/head.log").read_text()
    finally:
        for pid in live_pids(marker):  # what a failure left
            os.kill(pid, signal.SIGKILL)


def test_a_hook_outlives_the_heartbeat_that_reaps_orphans(project: Path, fakes: Path) -> None:
    """With no task running, the orphan reaper kills a child of the head in a session of its own at
    the next heartbeat: a hook keeps to the head's session, in a process group of its own. What one
    left in its group is killed when it ends, and reaped (the head adopted it) rather than left a zombie."""
    configure(
        project,
        {"queue_idle": ["sleep 300 & echo $! > bg.pid", "cat /proc/$$/stat > stat; sleep 2.5; echo $$ > done.pid"]},
    )
    ok("start")
    wait_until(lambda: (project / "done.pid").exists(), timeout=10, message="the idle hook to finish")
    fields = (project / "stat").read_text().split()  # pid (comm) state ppid pgrp session ...
    assert (int(fields[4]), int(fields[5])) == (int(fields[0]), head_pid())  # `start` gives the head a session
    assert not Path(f"/proc/{pids(project / 'bg.pid')[0]}").exists()  # gone, not a zombie of the running head
    ok("stop")


def test_an_unknown_event_or_timeout_is_a_one_line_config_error(project: Path) -> None:
    for text, says in [
        ("hooks:\n  task_started: echo hi\n", "config.yaml: hooks.task_started: unknown key (known: task_completed,"),
        ("hooks_timeout_seconds: soon\n", "config.yaml: hooks_timeout_seconds: expected a positive number"),
    ]:
        (project / "config.yaml").write_text(text)
        done = orchestrate("status")
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and says in done.stderr, done.stderr


def test_a_head_without_hooks_has_no_hooks_extension(project: Path) -> None:
    (project / "config.yaml").write_text("hooks_timeout_seconds: 5\n")
    assert not any(isinstance(x, Hooks) for x in builtin.extensions(configfile.load(project / "config.yaml")))
    (project / "config.yaml").write_text("hooks: {head_stopped: 'echo bye'}\n")
    assert any(isinstance(x, Hooks) for x in builtin.extensions(configfile.load(project / "config.yaml")))


def test_which_events_an_attempt_gives() -> None:
    assert attempt_events("completed", False, False) == ["task_completed"]
    assert attempt_events("failed", False, False) == ["task_failed"]
    assert attempt_events("pending", False, False) == []  # to be retried
    assert attempt_events(None, False, False) == []  # cancelled, or its claim moved on
    assert attempt_events("pending", True, False) == ["agent_cooling"]
    assert attempt_events("pending", False, True) == ["agent_unavailable"]
    assert attempt_events("failed", False, True) == ["task_failed", "agent_unavailable"]


def test_queue_idle_fires_once_and_rearms_on_work() -> None:
    watch, empty, busy = IdleWatch(), {"pending": 0, "running": 0, "completed": 3}, {"pending": 1, "running": 0}
    assert [watch.idle(c) for c in (empty, empty, busy, busy, empty, empty)] == [True, False, False, False, True, False]
    watch.armed = True  # as settled does: a task ran and ended between two looks
    assert watch.idle(empty)


def test_each_cancellation_is_new_once() -> None:
    seen = Cancellations(100.0)
    assert seen.new([]) == []
    assert seen.new([(1, 101.0)]) == [1]
    assert seen.new([(1, 101.0)]) == []  # the query is `>=`: it sees the latest again
    assert seen.new([(1, 101.0), (2, 101.0)]) == [2]  # cancelled at the same instant, committed later
    assert seen.new([(3, 102.0), (1, 103.0)]) == [3, 1]  # task 1 retried and cancelled again
    assert (seen.since, seen.seen) == (103.0, {1})


def test_a_hooks_environment() -> None:
    base = {"PATH": "/bin", "ORCHESTRATE_QUEUE": "/q", "ORCHESTRATE_TASK": "task_9", "ORCHESTRATE_AGENT": "x"}
    env = environment(base, "agent_cooling", "task_001", "codex", Path("/p/tasks.db"), Path("/p/config.yaml"))
    assert env == {
        "PATH": "/bin",
        "ORCHESTRATE_EVENT": "agent_cooling",
        "ORCHESTRATE_TASK": "task_001",
        "ORCHESTRATE_AGENT": "codex",
        "ORCHESTRATE_DB": "/p/tasks.db",
        "ORCHESTRATE_CONFIG": "/p/config.yaml",
    }
    bare = environment(base, "head_stopped", None, None, Path("/p/tasks.db"), Path("/p/config.yaml"))
    assert "ORCHESTRATE_TASK" not in bare and "ORCHESTRATE_AGENT" not in bare and "ORCHESTRATE_QUEUE" not in bare


def test_why_a_hook_failed() -> None:
    assert failure(0, b"noise") is None
    assert failure(2, b"") == "exited with status 2"
    assert failure(1, b"a\n\nb\nc\nd\n") == "exited with status 1; its stderr ended: b | c | d"
    assert failure(-9, b"") == "was killed by signal 9"
