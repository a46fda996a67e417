"""Stopping the head from the command line: a deadline on the wait, and a head that is already gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import invoke, wait_until

from orchestrate import api, configfile
from orchestrate.cli import lifecycle

# A "head" that shrugs off both of `stop`'s signals, as one stuck in a slow shutdown would.
STUBBORN = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "signal.signal(signal.SIGUSR1, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(120)\n"
)


@pytest.fixture
def fake_head(project: Path) -> Iterator[subprocess.Popen[str]]:
    """A live process registered as the queue's head, with a fresh heartbeat."""
    child = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"  # its signals are ignored now
        with api.opened(project / "tasks.db") as conn:
            conn.execute(
                "INSERT INTO head (id, pid, host, started_at, heartbeat_at) VALUES (1, ?, ?, ?, ?)",
                (child.pid, os.uname().nodename, time.time(), time.time()),
            )
            assert api.head(conn).running
        yield child
    finally:
        child.kill()
        child.wait()


def test_stop_gives_up_on_a_head_that_does_not_exit(
    project: Path, fake_head: subprocess.Popen[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "config.yaml").write_text("task_queue: {kill_grace_seconds: 1}\n")
    monkeypatch.setattr(lifecycle, "STOP_MARGIN_S", 1.0)  # in-process: the rule, not 15 s of waiting for it
    started = time.monotonic()
    result = invoke("stop")
    waited = time.monotonic() - started
    assert result.exit_code == 1, (result.stdout, result.stderr, result.exception)
    assert result.stdout == ""
    assert result.stderr == (
        f"orchestrate: head {fake_head.pid} did not stop within 2 s;"
        f" it may still be stopping (see {project / '.orchestrate/head.log'})\n"
    )
    assert 2 <= waited < 2 + 10  # the grace and the margin, both
    assert fake_head.poll() is None  # told to stop, never killed


def test_a_head_that_exits_before_the_signal_is_reported_stopped(
    fake_head: subprocess.Popen[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def gone(pid: int, sig: int) -> None:
        raise ProcessLookupError(3, "No such process")

    with monkeypatch.context() as patched:  # undone before the fixture kills the fake head
        patched.setattr(os, "kill", gone)
        result = invoke("stop")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert result.stdout == f"head {fake_head.pid} stopped\n"


def test_a_head_that_exits_on_the_signal_is_waited_for(project: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    with api.opened(project / "tasks.db") as conn:
        conn.execute(
            "INSERT INTO head (id, pid, host, started_at, heartbeat_at) VALUES (1, ?, ?, ?, ?)",
            (child.pid, os.uname().nodename, time.time(), time.time()),
        )
    result = invoke("stop")
    wait_until(lambda: child.poll() is not None, message="the head to exit")  # a zombie until reaped here
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert result.stdout == f"head {child.pid} stopped\n" and child.returncode == -signal.SIGTERM


def test_stop_wait_allows_for_the_longest_timeout_a_running_task_may_have(project: Path) -> None:
    (project / "config.yaml").write_text(
        "task_queue: {timeout_minutes: 1, kill_grace_seconds: 2}\nagents: {claude: {timeout_seconds: 300}}\n"
    )
    cfg = configfile.load(project / "config.yaml")
    assert lifecycle.stop_limit_s(cfg, wait=False) == 2 + lifecycle.STOP_MARGIN_S
    assert lifecycle.stop_limit_s(cfg, wait=True) == 300 + 2 + lifecycle.STOP_MARGIN_S
    assert invoke("add", "long", "--timeout", "20").exit_code == 0
    with api.opened(cfg.task_queue.database) as conn:
        conn.execute("UPDATE tasks SET status = 'running'")
    assert lifecycle.stop_limit_s(cfg, wait=True) == 20 * 60 + 2 + lifecycle.STOP_MARGIN_S
