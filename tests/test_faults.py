"""Faults injected into a real head: crashes, a stubborn stop, unwritable files, a locked queue."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import alive, orchestrate, wait_until
from test_head import configure, finished_ok, head_pid, no_agent_left, ok, started, status, task

from orchestrate import api, builtin, configfile
from orchestrate.core import attempt, head


def test_stop_with_five_agents_ignoring_sigterm_takes_the_grace_period_and_a_second(project: Path, fakes: Path) -> None:
    configure(project, claude=5)
    (project / "config.yaml").write_text(
        (project / "config.yaml").read_text().replace("grace_seconds: 1", "grace_seconds: 2")
    )
    ok("start")
    for n in range(5):
        ok("add", f"stubborn {n} [fake:ignore-term]")
    wait_until(lambda: len(started(fakes)) == 5, message="five stubborn agents")
    pids = [r["pid"] for r in started(fakes)]
    head = head_pid()
    begun = time.monotonic()
    ok("stop")
    took = time.monotonic() - begun
    assert not alive(head) and not any(alive(p) for p in pids) and no_agent_left(project)
    assert took < 2 + 1, f"stop took {took:.1f} s with a 2 s grace period"  # the issue's own bound
    assert [(t["status"], t["attempts"]) for t in map(task, range(1, 6))] == [("pending", 0)] * 5


def test_kill_9_at_random_moments_loses_and_duplicates_nothing(project: Path, fakes: Path) -> None:
    configure(project, claude=3)
    for n in range(12):
        ok("add", f"work {n} [fake:sleep=0.4]")
    chance = random.Random(6)
    agents_of_dead_heads: list[int] = []
    for _ in range(4):
        ok("start")
        assert not any(alive(p) for p in agents_of_dead_heads)  # the new head killed them first
        time.sleep(chance.uniform(0.2, 1.2))  # the fault's timing is the point here, not a wait
        agents_of_dead_heads = [r["pid"] for r in started(fakes) if alive(r["pid"])]
        os.kill(head_pid(), signal.SIGKILL)
        wait_until(lambda: not status()["head"]["running"], message="the killed head to be seen as gone")
    ok("start")
    wait_until(lambda: status()["counts"]["completed"] == 12, timeout=60, message="every task completed")
    ok("stop")
    assert no_agent_left(project)
    for n in range(1, 13):
        assert task(n)["attempts"] == 1  # interrupted runs were not counted
    entries = json.loads((project / "context/completed_tasks.json").read_text())
    assert sorted(e["id"] for e in entries) == [f"task_{n:03d}" for n in range(1, 13)]
    # An agent that finished between the head's death and its recording may run once more;
    # a run is recorded as completed once whatever happens.
    finished = {r["pid"] for r in finished_ok(fakes)}
    assert {r["env"]["ORCHESTRATE_TASK"] for r in started(fakes) if r["pid"] in finished} >= {
        f"task_{n:03d}" for n in range(1, 13)
    }


@pytest.fixture(params=["not-a-directory", "disk-full", "read-only"])
def unwritable(request: pytest.FixtureRequest, project: Path) -> Iterator[str]:
    """The context and logs directories cannot be written: a file stands where each should be,
    or each is a full 64 KB tmpfs, or a read-only one (mounts need root, as CI has)."""
    dirs = [project / "ctx", project / ".orchestrate/logs"]
    if request.param == "not-a-directory":
        (project / ".orchestrate").mkdir()
        for d in dirs:
            d.write_text("a file where a directory should be\n")
        yield request.param
        return
    for d in dirs:
        d.mkdir(parents=True)
        options = "size=64k" + (",ro" if request.param == "read-only" else "")
        if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(d)], capture_output=True).returncode:
            pytest.skip("mounting a tmpfs needs root")
        with contextlib.suppress(OSError), open(d / "filler", "wb") as f:
            f.write(b"x" * 200_000)  # ENOSPC part-way: the disk is full
    try:
        yield request.param
    finally:
        for d in dirs:
            subprocess.run(["umount", "-l", str(d)], check=False)


def test_unwritable_context_and_logs_do_not_stop_the_work(project: Path, fakes: Path, unwritable: str) -> None:
    configure(project, more="context:\n  directory: ctx\n")
    for n in range(3):
        ok("add", f"task {n}")
    done = orchestrate("run")
    assert done.returncode == 0, done.stderr
    assert [task(n)["status"] for n in (1, 2, 3)] == ["completed"] * 3  # recorded in the queue all the same
    assert done.stderr.count("cannot write output files") == 1
    assert done.stderr.count("cannot write agents' logs") == 1
    assert done.stderr.count("cannot update") == 1
    assert "Traceback" not in done.stderr


def test_a_queue_locked_past_the_busy_timeout_delays_nothing_for_good(project: Path, fakes: Path) -> None:
    configure(project)
    ok("start")
    ok("add", "finishes while the queue is locked [fake:sleep=1]")
    wait_until(lambda: started(fakes), message="the agent to start")
    locker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
            "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); time.sleep(7); c.execute('COMMIT')",
            str(project / "tasks.db"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert locker.stdout and locker.stdout.readline().strip() == "locked"
    busy = orchestrate("add", "during the lock")  # waits out the 5 s busy timeout, then says so
    assert busy.returncode == 1 and "busy" in busy.stderr and len(busy.stderr.strip().splitlines()) == 1
    assert finished_ok(fakes)  # the agent finished while its result could not be written
    assert locker.wait(timeout=30) == 0
    first = wait_until(lambda: (t := task(1))["status"] == "completed" and t, message="its result, once the lock went")
    assert first["attempts"] == 1 and len(started(fakes)) == 1  # recorded once, not run again
    ok("add", "after the lock")
    wait_until(lambda: task(2)["status"] == "completed", message="the task added after the lock")
    assert status()["head"]["running"]  # the head rode it out
    ok("stop")
    with sqlite3.connect(project / "tasks.db") as conn:
        assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == 2  # nothing lost, nothing extra
    assert "Traceback" not in (project / ".orchestrate/head.log").read_text()


def test_an_invalid_config_edit_leaves_the_running_head_alone(project: Path, fakes: Path) -> None:
    configure(project)
    ok("start")
    head = head_pid()
    good = (project / "config.yaml").read_text()
    (project / "config.yaml").write_text("agents: [this is: not valid\n")
    broken = orchestrate("status")
    assert broken.returncode == 2 and "config.yaml" in broken.stderr and len(broken.stderr.splitlines()) == 1
    with api.opened(project / "tasks.db") as conn:  # queued by a route that needs no config
        api.add_tasks(conn, [api.NewTask("queued while the config is broken")])
    wait_until(lambda: finished_ok(fakes), message="the head to run it with the config it started with")
    (project / "config.yaml").write_text(good)
    assert head_pid() == head and task(1)["status"] == "completed"
    ok("stop")


async def test_an_unexpected_error_is_a_failed_attempt_not_a_hot_loop(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "config.yaml").write_text(
        "agents:\n  t: {type: command, command: [sh, -c, 'echo ok']}\ntask_queue: {retry_delay_seconds: 0.01}\n"
    )
    with api.opened(project / "tasks.db") as conn:
        api.add_tasks(conn, [api.NewTask("meets a bug", max_retries=2)])
    calls = 0

    async def broken(*args: object) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("a bug in the head")

    monkeypatch.setattr(attempt, "_run_agent", broken)
    cfg = configfile.load(project / "config.yaml")
    assert await head.Head(cfg, builtin.extensions(cfg, until_idle=True)).run() == 1
    with api.opened(project / "tasks.db") as conn:
        failed = api.get_task(conn, 1)
    assert (failed.status, failed.attempts, calls) == ("failed", 3, 3)
    assert failed.error == "orchestrate could not run it: RuntimeError('a bug in the head'); see the head's log"
