"""`hooks:`: shell commands run when things happen (a task ends, an agent cools or is unavailable,
the queue goes idle, the head stops), each told what on stdin and in its environment.

A hook runs in the background: it never holds up the head, and one that fails or hangs is logged
once and killed at its timeout. Nothing a hook started outlives the head."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from orchestrate.configfile import HookSettings
from orchestrate.core.errors import QueueBusy
from orchestrate.core.extension import Extension
from orchestrate.core.process import QUEUE_VAR, TASK_VAR, send_signal
from orchestrate.core.states import FINISHED, Status
from orchestrate.core.store import SELECT_TASKS, task_from_row
from orchestrate.plans import CONFIG_VAR, DB_VAR
from orchestrate.shapes import task_json

if TYPE_CHECKING:
    from orchestrate.core.attempt import Attempt
    from orchestrate.core.config import Config
    from orchestrate.core.head import Head

log = logging.getLogger(__name__)
EVENT_VAR, AGENT_VAR = "ORCHESTRATE_EVENT", "ORCHESTRATE_AGENT"
GRACE_S = 2.0  # between a late hook's SIGTERM and SIGKILL
STDERR_KEPT = 4096  # bytes of a hook's stderr kept, for the last lines a failure logs
COUNTS = "SELECT status, n FROM task_counts"
CANCELLED = f"{SELECT_TASKS} WHERE t.status = '{Status.CANCELLED}' AND t.finished_at >= ?"  # tasks_by_finish
PIPE, DEVNULL = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL


def settings(cfg: Config) -> HookSettings:
    found: HookSettings = cfg.features.get("hooks", HookSettings())
    return found


def attempt_events(status: str | None, cooling: bool, newly_unavailable: bool) -> list[str]:
    """The events a settled attempt gives, from its row's status as recorded (None: nothing was):
    a task ended for good (a failure to be retried is not one), its agent cooling or unavailable."""
    ended = [f"task_{status}"] if status in FINISHED else []
    return ended + ["agent_cooling"] * cooling + ["agent_unavailable"] * newly_unavailable


@dataclass
class IdleWatch:
    """queue_idle fires once, and again only after something was pending or running since."""

    armed: bool = True

    def idle(self, counts: Mapping[str, int]) -> bool:
        """Whether these counts make the queue newly idle."""
        if counts.get(Status.PENDING, 0) or counts.get(Status.RUNNING, 0):
            self.armed = True
            return False
        fire, self.armed = self.armed, False
        return fire


@dataclass
class Cancellations:
    """Which cancellations are new: those since the last look, each once (two may share a stamp)."""

    since: float
    seen: set[int] = field(default_factory=set)  # the tasks cancelled at `since`

    def new(self, found: list[tuple[int, float]]) -> list[int]:
        """Of the (task, finished_at) cancelled at or after `since`, those not seen before."""
        fresh = [task for task, at in found if at > self.since or task not in self.seen]
        if found:
            self.since = max(at for _, at in found)
            self.seen = {task for task, at in found if at == self.since}
        return fresh


def environment(
    base: Mapping[str, str], event: str, task: str | None, agent: str | None, db: Path, config: Path
) -> dict[str, str]:
    """A hook's environment: the head's, naming what happened and where the queue is for the CLI.
    Never the queue's marker: the head's sweep kills a marked process whose task is not running."""
    env = {k: v for k, v in base.items() if k not in (QUEUE_VAR, TASK_VAR, AGENT_VAR)}
    env |= {EVENT_VAR: event, DB_VAR: str(db), CONFIG_VAR: str(config)}
    env |= {TASK_VAR: task} if task else {}
    return env | ({AGENT_VAR: agent} if agent else {})


def failure(code: int | None, stderr: bytes) -> str | None:
    """Why a hook that ended with `code` failed, with the end of what it said; None if it did not."""
    if not code:
        return None
    why = f"exited with status {code}" if code > 0 else f"was killed by signal {-code}"
    said = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()][-3:]
    return f"{why}; its stderr ended: {' | '.join(said)}" if said else why


class Hooks(Extension):
    def __init__(self, cfg: Config) -> None:
        self.cfg, self.settings = cfg, settings(cfg)
        self.jobs: set[asyncio.Task[None]] = set()  # each firing's commands, run one after another
        self.logged: set[tuple[str, str]] = set()  # (event, command) whose failure was logged
        self.told: set[str] = set()  # agents whose agent_unavailable fired
        self.queue_idle = IdleWatch()

    async def started(self, head: Head) -> None:
        self.head = head
        self.cancellations = Cancellations(head.now())  # never replay the cancellations before this head

    async def settled(self, attempt: Attempt) -> None:
        self.queue_idle.armed = True  # a task ran since the queue was last idle
        task, agent = attempt.recorded or attempt.task, attempt.slot.agent.name
        if newly := agent in self.head.distributor.unavailable and agent not in self.told:
            self.told.add(agent)
        cooling = bool(attempt.verdict and attempt.verdict.cooling_until)
        for event in attempt_events(attempt.recorded.status if attempt.recorded else None, cooling, newly):
            self.fire(event, task_json(task), task.name, agent if event.startswith("agent_") else None)

    async def beat(self) -> None:
        for agent, why in list(self.head.distributor.unavailable.items()):  # such as a CLI missing at start
            if agent not in self.told:
                self.told.add(agent)
                self.fire("agent_unavailable", {"agent": agent, "why": why}, agent=agent)
        if not self.settings.commands.get("task_cancelled"):
            return
        try:
            rows = await self.head.queue.read(CANCELLED, self.cancellations.since)
        except QueueBusy:  # another process holds the queue: the next beat looks again
            return
        tasks = {t.id: t for t in map(task_from_row, rows)}
        for task_id in self.cancellations.new([(t.id, t.finished_at or 0.0) for t in tasks.values()]):
            self.fire("task_cancelled", task_json(tasks[task_id]), tasks[task_id].name)

    async def idle(self) -> None:
        if not self.settings.commands.get("queue_idle") or (counts := await self.counts()) is None:
            return  # a queue too busy to read: the next round looks again
        if self.queue_idle.idle(counts):
            self.fire("queue_idle", {"counts": counts})

    async def stopping(self) -> None:
        if self.settings.commands.get("head_stopped"):
            self.fire("head_stopped", {"counts": await self.counts()})
        await asyncio.gather(*self.jobs)  # each command ends by its own deadline, killed past it

    async def counts(self) -> dict[str, int] | None:
        try:
            return dict(await self.head.queue.read(COUNTS))
        except (QueueBusy, sqlite3.Error):  # busy or broken: queue_idle waits; head_stopped is told null
            return None

    def fire(self, event: str, stdin: dict[str, Any], task: str | None = None, agent: str | None = None) -> None:
        """Start `event`'s commands in the background, one after another; return at once."""
        if not (commands := self.settings.commands.get(event)):
            return
        env = environment(os.environ, event, task, agent, self.head.db, self.cfg.path.resolve())
        job = asyncio.ensure_future(self.run_all(event, commands, env, (json.dumps(stdin) + "\n").encode()))
        self.jobs.add(job)
        job.add_done_callback(self.jobs.discard)

    async def run_all(self, event: str, commands: tuple[str, ...], env: dict[str, str], stdin: bytes) -> None:
        for command in commands:
            try:
                why = await run(command, self.cfg.root, env, stdin, self.settings.timeout_seconds)
            except Exception:  # a bug: say so, and never let a hook take the head down
                log.exception("hooks.%s: %r could not be run", event, command)
                continue
            if why and (event, command) not in self.logged:
                self.logged.add((event, command))
                log.error("hooks.%s: %r %s (logged once: its later failures are not)", event, command, why)


async def run(command: str, cwd: Path, env: dict[str, str], stdin: bytes, timeout: float) -> str | None:
    """Run one hook to its end, within `timeout`, and whatever it left in its group after it: why it
    failed, or None."""
    loop = asyncio.get_running_loop()
    # A process group of its own to signal, in the head's session: the orphan reaper
    # (orchestrate/orphans.py) kills a child in another session once no task that was running when
    # it started still runs, which for a hook fired by the last task would be at once.
    spawn: dict[str, Any] = dict(cwd=cwd, env=env, stdin=PIPE, stdout=DEVNULL, stderr=PIPE, process_group=0)
    try:
        transport, hook = await loop.subprocess_exec(lambda: _Hook(loop), "/bin/sh", "-c", command, **spawn)
    except OSError as exc:
        return f"could not start: {exc.strerror}"
    pid = transport.get_pid()  # also its process group's id
    pipe = cast(asyncio.WriteTransport, transport.get_pipe_transport(0))
    pipe.write(stdin)  # buffered by the loop: a hook that never reads it blocks nothing (EPIPE is ignored)
    pipe.close()
    why = None
    if not await _within(hook.exited, timeout):
        why = f"timed out after {timeout:g} s and was killed"
        send_signal(pid, signal.SIGTERM)
        await _within(hook.exited, GRACE_S)
    send_signal(pid, signal.SIGKILL)  # past the grace, or what it left running in its group (`sleep 300 &`)
    if await _within(hook.exited, GRACE_S):
        await _reap(pid)
    transport.close()
    return why or failure(transport.get_returncode(), bytes(hook.stderr))


async def _within(future: asyncio.Future[None], timeout: float) -> bool:
    done, _ = await asyncio.wait({future}, timeout=timeout)
    return bool(done)


async def _reap(group: int) -> None:
    """Collect what the hook left in its group once it is killed: its parent gone, each came to the
    head, the subreaper (orphans.py), and would stay a zombie until the head exits."""
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline:
        try:
            if os.waitpid(-group, os.WNOHANG)[0] == 0:  # one is still dying
                await asyncio.sleep(0.02)
        except ChildProcessError:  # none of the group is the head's child: all collected
            return


class _Hook(asyncio.SubprocessProtocol):
    """Keeps the end of a hook's stderr. The exit is heard from the process, not from its pipes: a
    child left in the background may hold them open."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.stderr = bytearray()
        self.exited: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.stderr += data
        del self.stderr[:-STDERR_KEPT]

    def process_exited(self) -> None:
        self.exited.set_result(None)
