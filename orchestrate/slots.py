"""The head's agent slots as `status`, `agents` and the dashboard read them: the agents table,
rewritten by the head every second."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from orchestrate.core.errors import QueueBusy
from orchestrate.core.extension import Extension
from orchestrate.core.states import Event

if TYPE_CHECKING:  # `start` checks the agents' programs without importing the head and asyncio
    from orchestrate.core.attempt import Attempt
    from orchestrate.core.config import AgentConfig
    from orchestrate.core.distributor import Distributor, Slot
    from orchestrate.core.head import Head

TOTALS = "SELECT agent, count(*) FILTER (WHERE outcome = 'completed'), total(cost_usd) FROM runs GROUP BY agent"
TASK_PID = "UPDATE tasks SET pid = ? WHERE id = ? AND claim = ? AND status = 'running'"  # for `show`
PUT = """INSERT INTO agents (id, type, state, note, task_id, pid, rss_mb, since, tasks_done, cost_usd)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""  # after DELETE FROM agents: the slots in their order


class Slots(Extension):
    """Publishes each slot's state, current task and totals (over the runs on record, so they
    survive a restart); an agent whose program is not installed is unavailable from the start,
    rather than at its first task, and one whose credentials are refused from that run on."""

    def __init__(self) -> None:
        self.done: Counter[str] = Counter()  # runs that completed their task, by slot
        self.cost: defaultdict[str, float] = defaultdict(float)  # what its runs cost, by slot
        self.since: dict[str, float] = {}  # when each busy slot's attempt began

    async def started(self, head: Head) -> None:
        self.head = head
        for name, why in missing(head.distributor).items():
            head.unavailable(name, why)
        for slot, done, cost in await head.queue.read(TOTALS):
            self.done[slot], self.cost[slot] = done, cost
        await head.queue.write(("DELETE FROM agents", ()), *self.rows())

    async def workdir(self, attempt: Attempt) -> None:
        self.since[attempt.slot.id] = self.head.now()

    async def after(self, attempt: Attempt) -> None:
        if attempt.result.unauthorized and not attempt.stopped:  # every task would fail the same way
            self.head.unavailable(attempt.slot.agent.name, attempt.result.error or "its credentials were refused")
            attempt.unavailable = True

    async def settled(self, attempt: Attempt) -> None:
        self.cost[attempt.slot.id] += attempt.result.cost_usd or 0
        self.done[attempt.slot.id] += bool(attempt.verdict and attempt.verdict.event is Event.COMPLETE)

    async def beat(self) -> None:
        slots = self.head.distributor.slots
        pids = [(TASK_PID, (s.pid, s.task.id, s.task.claim)) for s in slots if s.task and s.pid]
        await self.head.queue.write(("DELETE FROM agents", ()), *self.rows(), *pids)

    async def stopping(self) -> None:
        with contextlib.suppress(sqlite3.Error, QueueBusy):  # a queue that cannot be written: the next head clears it
            await self.head.queue.write(("DELETE FROM agents", ()))

    def rows(self) -> list[tuple[str, tuple[Any, ...]]]:
        now = self.head.now()
        return [(PUT, (s.id, s.agent.type, *self.state(s, now), *self.facts(s))) for s in self.head.distributor.slots]

    def state(self, slot: Slot, now: float) -> tuple[str, str | None]:
        """The slot's state, and a note that explains it."""
        name, distributor = slot.agent.name, self.head.distributor
        if slot.task is not None:
            return "busy", None
        if name in distributor.unavailable:
            return "unavailable", distributor.unavailable[name]
        if (until := distributor.cooling.get(name, 0)) > now:
            return "cooling", f"rate limited until {time.strftime('%H:%M:%S', time.localtime(until))}"
        return "idle", None

    def facts(self, s: Slot) -> tuple[Any, ...]:
        since = self.since.get(s.id) if s.task else None
        return (s.task and s.task.id, s.pid, s.rss_mb, since, self.done[s.id], self.cost[s.id])


# How each built-in agent's CLI is installed (its npm package), for when its program is missing.
INSTALL = {
    "claude": "npm install -g @anthropic-ai/claude-code",
    "codex": "npm install -g @openai/codex",
    "gemini": "npm install -g @google/gemini-cli",
}


def missing(distributor: Distributor) -> dict[str, str]:
    """Agents whose program is not installed, by name: why each cannot run."""
    return missing_programs(s.agent for s in distributor.slots)


def missing_programs(agents: Iterable[AgentConfig]) -> dict[str, str]:
    """Of `agents`, those whose program is not on their PATH, by name: why each cannot run and
    what to do about it."""
    path = os.environ.get("PATH")
    found = {}
    for a in {a.name: a for a in agents}.values():
        program = a.command[0]
        if shutil.which(program, path=a.env.get("PATH", path)) is None:
            fix = INSTALL[a.type] if a.type in INSTALL and os.path.basename(program) == a.type else None
            hint = f"install it: {fix}" if fix else f"check agents.{a.name}.command in the configuration"
            found[a.name] = f"{program!r} is not installed or not on PATH ({hint})"
    return found
