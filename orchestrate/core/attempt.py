"""One attempt at a task: a typed record that moves through named steps, and the pure decision
of what became of it.

    workdir -> before -> run the agent -> after -> decide -> accept -> record -> settled

Extensions hook every step but `run` and `decide` (core/extension.py).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from orchestrate.core import process
from orchestrate.core.agent import Adapter, Result, output_path, prompt
from orchestrate.core.config import Config
from orchestrate.core.distributor import Slot
from orchestrate.core.errors import AgentUnavailable, OrchestrateError, QueueBusy
from orchestrate.core.queue import Write
from orchestrate.core.states import Event, Stop
from orchestrate.core.store import Task

if TYPE_CHECKING:
    from orchestrate.core.head import Head

log = logging.getLogger(__name__)
COOLING_S = 60.0  # a rate limit that names no reset time cools its agent this long, doubling in a row
BACKOFF_MAX_S = 3600.0  # retry_delay_seconds doubles with each failure, up to this


class Verdict(NamedTuple):
    event: Event | None  # None: nothing to record (cancelled: the row already says so); REQUEUE spends no attempt
    error: str | None = None
    not_before: float = 0.0  # when a retry may be claimed
    cooling_until: float | None = None  # the agent reported a limit: rest it until then


@dataclass
class Attempt:
    """One run of an agent on a claimed task, as it moves through the steps."""

    task: Task  # as claimed: `task.claim` is this run's token
    slot: Slot
    cfg: Config
    log: process.Log
    env: dict[str, str]
    current: Callable[[], Awaitable[bool]]  # whether the task's row still runs on this claim
    timeout: float  # the agent's limit, in seconds
    cwd: Path  # where the agent runs: the project directory unless an extension says otherwise
    worktree: Path | None = None  # set by the worktree extension
    sections: list[str] = field(default_factory=list)  # the prompt's, after the task's own (the shared context)
    prompt: str | None = None  # an extension's in place of the whole prompt: a continued session's
    session: str | None = None  # the CLI session this run continues, set by an extension
    budget: float | None = None  # the most the run may spend in USD, for a CLI that takes a budget
    result: Result = Result(False, "", "the agent did not run")  # noqa: RUF009 (immutable)
    stopped: Stop | None = None
    failure: str | None = None  # what failed around the agent: its workspace, a check, a commit
    unavailable: bool = False  # the agent's program cannot be started, or its login: not the task's fault
    broke: bool = False  # orchestrate itself failed around the run
    exit_code: int | None = None
    limits: int = 0  # the agent's rate limits in a row before this run
    changes: list[str] | None = None  # what git says the attempt changed; None: not a repository
    checks: list[str] = field(default_factory=list)  # each check's outcome, for the output file
    verdict: Verdict | None = None
    writes: list[Write] = field(default_factory=list)  # extensions' statements, recorded with the task
    recorded: Task | None = None  # the row as recorded; None when its claim had moved on

    @property
    def over(self) -> bool:
        """Nothing more should run: the agent was stopped, or something already failed."""
        return self.stopped is not None or self.failure is not None

    def fail(self, why: str) -> None:
        """Fail the attempt (the first reason given is the one kept)."""
        self.failure = self.failure or why


def backoff(delay: float, attempts: int) -> float:
    """The wait before retry number `attempts`: `delay` doubled each time, capped."""
    return min(delay * 2.0 ** min(attempts - 1, 32), BACKOFF_MAX_S)


def decide(attempt: Attempt, now: float) -> Verdict:
    """What became of `attempt`: a pure function of the attempt (its task, how its agent ended) and the clock."""
    result, stopped, task = attempt.result, attempt.stopped, attempt.task
    if stopped is Stop.CANCELLED:
        return Verdict(None)
    if stopped is Stop.STOPPED or attempt.unavailable:  # not the task's doing
        return Verdict(Event.REQUEUE, result.error if attempt.unavailable else None)
    if (until := result.limited_until) is not None and not attempt.over:
        reset = max(until, now + 1) if until else now + min(COOLING_S * 2**attempt.limits, BACKOFF_MAX_S)
        return Verdict(Event.REQUEUE, result.error, cooling_until=reset)
    if stopped is Stop.TIMEOUT:
        error: str | None = f"timed out after {attempt.timeout:g} s"
    elif attempt.failure is None and result.ok and not stopped:  # a watchdog's stop says why in `failure`
        return Verdict(Event.COMPLETE)
    else:
        error = attempt.failure or result.error
    if task.attempts + 1 > task.max_retries:
        return Verdict(Event.FAIL, error)
    wait = backoff(attempt.cfg.task_queue.retry_delay_seconds, task.attempts + 1)
    return Verdict(Event.RETRY_LATER, error, not_before=now + wait)


async def work(head: Head, slot: Slot, task: Task) -> None:
    """Take one claimed task through every step, to its record and beyond."""
    cfg, agent = head.cfg, slot.agent
    timeout = task.timeout_seconds or agent.timeout_seconds or cfg.task_queue.timeout_minutes * 60
    env = {**head.environ, **agent.env, process.QUEUE_VAR: str(head.db), process.TASK_VAR: task.name}
    with contextlib.closing(process.Log(cfg.root / str(task.log_file), head.once)) as out:  # the claim set log_file
        attempt = Attempt(task, slot, cfg, out, env, lambda: head.current(task), timeout, cfg.root)
        attempt.limits = head.distributor.limits[agent.name]
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        out.write(f"=== orchestrate: attempt {task.attempts + 1} on {slot.id} at {stamp} ===\n".encode())
        try:
            await head.each("workdir", attempt)
            for before in head.hooks["before"]:
                if not attempt.over:
                    await before(attempt)
            if not attempt.over:
                await _run_agent(head, attempt, head.adapters[agent.type])
            await head.each("after", attempt)
        except Exception as exc:  # a bug, or the machine: a failed attempt, so it cannot loop hot
            log.exception("%s: orchestrate could not run it", task.name)
            attempt.fail(f"orchestrate could not run it: {exc!r}; see the head's log")
            attempt.broke = True
        await _settle(head, attempt)


async def _run_agent(head: Head, attempt: Attempt, adapter: Adapter) -> None:
    task, agent = attempt.task, attempt.slot.agent
    while True:
        text = attempt.prompt or prompt(task, attempt.cwd, attempt.sections)
        argv, stdin = adapter.argv(agent.command, text, attempt.session, attempt.budget)
        try:
            reader = adapter.Reader(agent)
            code, attempt.stopped = await process.run(argv, stdin, reader, attempt.timeout, attempt)
        except AgentUnavailable as exc:
            head.unavailable(agent.name, str(exc))
            attempt.unavailable, attempt.result = True, Result(False, "", str(exc))
            return
        except OrchestrateError as exc:  # it could not be started there: the attempt's fault, not the agent's
            return attempt.fail(str(exc))
        if attempt.stopped or adapter.detaches:
            await head.sweep(task.name)  # at once; other strays are found by the next heartbeat
        attempt.result, attempt.exit_code = reader.finish(code), code
        if not (attempt.result.stale_session and attempt.session) or attempt.stopped:
            return
        log.info("%s: %s cannot continue session %s; starting afresh", task.name, agent.name, attempt.session)
        attempt.session = attempt.prompt = None  # the same attempt, in a fresh session: nothing spent


async def _settle(head: Head, attempt: Attempt) -> None:
    task, slot = attempt.task, attempt.slot
    attempt.verdict = decide(attempt, head.now())
    if attempt.verdict.event is Event.COMPLETE:  # an extension that acts on it checks attempt.current()
        await head.each("accept", attempt)
    verdict = attempt.verdict
    if until := verdict.cooling_until:
        head.distributor.cooling[slot.agent.name] = until
        head.distributor.limits[slot.agent.name] += 1
        log.warning("%s: %s hit a rate limit; cooling until %s", task.name, slot.agent.name, time.ctime(until))
    elif attempt.stopped is None and not attempt.unavailable:  # it reached the API: the next limit is a first
        head.distributor.limits.pop(slot.agent.name, None)
    await head.each("record", attempt)
    attempt.recorded = await _record(head, attempt, verdict)
    head.failures += bool(attempt.recorded) and verdict.event is Event.FAIL
    shown = "cancelled" if verdict.event is None else verdict.event if attempt.recorded else "not recorded"
    log.info("%s: %s on %s%s", task.name, shown, slot.id, f": {verdict.error}" if verdict.error else "")
    await head.each("settled", attempt)


async def _record(head: Head, attempt: Attempt, verdict: Verdict) -> Task | None:
    """Write what became of the run, conditioned on its claim, with the extensions' statements;
    the row as written, or None."""
    task, result, event = attempt.task, attempt.result, verdict.event
    fields: dict[str, Any] = {"pid": None}  # and none when cancelled: the row already says so
    if event is Event.REQUEUE:
        fields |= dict(agent=None, started_at=None, error=verdict.error or task.error)
    elif event is not None:
        fields |= dict(agent=attempt.slot.id, attempts=task.attempts + 1, error=verdict.error, result=result.message)
        fields |= dict(session_id=result.session_id or task.session_id, not_before=verdict.not_before)
        if event is not Event.RETRY_LATER:  # the context feature writes the output file once this is recorded
            fields |= dict(finished_at=head.now(), output_file=head.relative(output_path(attempt.cfg, task.id)))
    while True:  # however long another process holds the queue: a result dropped would leave the task running
        try:
            return await head.queue.record(task.id, task.claim, event, attempt.writes, **fields)
        except QueueBusy as exc:  # each try waits out the busy timeout: this never spins
            head.once(f"cannot record results: {exc}; still trying")
        except sqlite3.Error as exc:
            head.broken(f"cannot record {task.name}'s result", exc)
            return None
