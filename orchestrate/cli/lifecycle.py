"""Starting and stopping the head node from the command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from orchestrate import api
from orchestrate.core.config import Config
from orchestrate.core.errors import OrchestrateError, QueueBusy

START_WAIT_S = 15.0
STOP_MARGIN_S = 15.0  # past the head's kill grace: it puts tasks back and closes the queue


def _head(cfg: Config) -> api.Head:
    with api.queue_of(cfg, create=False) as conn:
        return api.head(conn)


def _head_or_none(cfg: Config) -> api.Head | None:
    """The head as the queue knows it, or None while another process holds the queue too long to say."""
    try:
        return _head(cfg)
    except QueueBusy:
        return None


def no_head(cfg: Config) -> None:
    """Refuse to start a second head: one that runs, or one that holds the queue but does not answer."""
    head = _head(cfg)
    if head.problem:
        raise OrchestrateError(head.problem)
    if head.running:
        raise OrchestrateError(f"a head is already running on {cfg.task_queue.database} (pid {head.pid})")


def start_background(cfg: Config, child_argv: list[str]) -> tuple[int, Path]:
    """Launch the head detached, and return once it has registered in the queue: (pid, log)."""
    no_head(cfg)
    cfg.runtime_dir.mkdir(parents=True, exist_ok=True)
    log = cfg.runtime_dir / "head.log"
    with log.open("ab") as out:
        child = subprocess.Popen(child_argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    deadline = time.monotonic() + START_WAIT_S
    while time.monotonic() < deadline:
        if child.poll() is not None:
            last = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-1:]
            raise OrchestrateError(f"the head exited at start ({child.returncode}): {' '.join(last)}")
        head = _head(cfg)
        if head.running and head.pid == child.pid:
            return child.pid, log
        time.sleep(0.05)
    child.terminate()
    raise OrchestrateError(f"the head did not come up within {START_WAIT_S:g} s; see {log}")


def stop(cfg: Config, wait: bool, waiting: Callable[[float], None] = lambda limit: None) -> int:
    """Signal the head (SIGTERM stops now, SIGUSR1 lets running tasks finish) and wait for it to exit,
    telling `waiting` how long at most; stop waiting as soon as the head does not answer."""
    head = _head(cfg)
    if head.stopped:  # a signal would wait for SIGCONT: say so, rather than leave one pending
        raise OrchestrateError(head.problem or "")
    if head.pid is None or not (head.running or head.unresponsive):
        raise OrchestrateError(f"no head is running on {cfg.task_queue.database}")
    how = signal.SIGUSR1 if wait else signal.SIGTERM
    limit = stop_limit_s(cfg, wait)
    try:
        os.kill(head.pid, how)
    except ProcessLookupError:
        return head.pid  # it exited between the look and the signal: stopped all the same
    waiting(limit)
    deadline = time.monotonic() + limit
    while api.alive(head.pid):
        if time.monotonic() > deadline:
            raise OrchestrateError(
                f"head {head.pid} did not stop within {limit:g} s; it may still be stopping"
                f" (see {cfg.runtime_dir / 'head.log'})"
            )
        if (now := _head_or_none(cfg)) and now.problem and now.pid == head.pid:  # it cannot finish now
            raise OrchestrateError(f"{now.problem} (it was sent {how.name} and acts on it once it answers)")
        time.sleep(0.1)
    return head.pid


def stop_limit_s(cfg: Config, wait: bool) -> float:
    """How long a stopping head may take: the grace it gives the agents it stops, its hooks' time (the
    head_stopped commands one after another, beside those still running), and a margin; with
    `wait`, first the longest timeout a running task may have (checks after the agent not counted)."""
    from orchestrate.configfile import HookSettings

    hooks: HookSettings = cfg.features.get("hooks", HookSettings())
    last = len(hooks.commands.get("head_stopped", ())) + 1 if hooks.commands else 0
    grace = cfg.task_queue.kill_grace_seconds + STOP_MARGIN_S + last * hooks.timeout_seconds
    if not wait:
        return grace
    own = [a.timeout_seconds or 0.0 for a in cfg.agents]
    with api.queue_of(cfg, create=False) as conn:
        own += [t.timeout_seconds or 0.0 for t in api.list_tasks(conn, "active")]
    return max([cfg.task_queue.timeout_minutes * 60, *own]) + grace


def child_argv(config: Path | None, db: Path | None, agents: str | None) -> list[str]:
    """The command that runs the head in the foreground, with this invocation's options."""
    argv = [sys.executable, "-m", "orchestrate"]
    argv += ["--config", str(config.resolve())] if config else []
    argv += ["--db", str(db.resolve())] if db else []
    return [*argv, "start", "--foreground", *(["--agents", agents] if agents else [])]
