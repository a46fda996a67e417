"""Agent slots and who takes the next task: type affinity, then the least-loaded, round-robin."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from orchestrate.core.config import AgentConfig
from orchestrate.core.states import Stop
from orchestrate.core.store import Task


@dataclass
class Slot:
    id: str  # claude-1, claude-2, codex-1...
    agent: AgentConfig
    task: Task | None = None
    stop: asyncio.Future[Stop] | None = None  # resolved with a reason to interrupt the agent
    work: asyncio.Future[None] | None = None
    pid: int | None = None
    since: float | None = None
    rss_mb: float | None = None
    tasks_done: int = 0
    cost_usd: float = 0.0

    def interrupt(self, why: Stop | None) -> None:
        """Stop the agent running here, for `why`; None does nothing."""
        if why and self.stop and not self.stop.done():
            self.stop.set_result(why)

    @property
    def takes(self) -> tuple[str, str]:
        """What a task may prefer to run here: the agent's entry name or its type."""
        return self.agent.name, self.agent.type


class Distributor:
    def __init__(self, agents: tuple[AgentConfig, ...]) -> None:
        self.slots = [Slot(f"{a.name}-{n}", a) for a in agents for n in range(1, a.max_instances + 1)]
        self.cooling: dict[str, float] = {}  # agent name -> until when
        self.unavailable: dict[str, str] = {}  # agent name -> why
        self.turn = 0

    def state(self, slot: Slot, now: float) -> tuple[str, str | None]:
        """The slot's state for `status`, and a note that explains it."""
        name = slot.agent.name
        if slot.task is not None:
            return "busy", None
        if name in self.unavailable:
            return "unavailable", self.unavailable[name]
        if (until := self.cooling.get(name, 0)) > now:
            return "cooling", f"rate limited until {time.strftime('%H:%M:%S', time.localtime(until))}"
        return "idle", None

    def missing(self) -> dict[str, str]:
        """Agents whose program is not installed, by name: why each cannot run."""
        agents = {s.agent.name: s.agent for s in self.slots}.values()
        path = os.environ.get("PATH")
        return {
            a.name: f"{a.command[0]!r} is not installed or not on PATH"
            for a in agents
            if shutil.which(a.command[0], path=a.env.get("PATH", path)) is None
        }

    def free(self, now: float) -> list[Slot]:
        """The idle slots in the order they take tasks: least-loaded agent first, in turn among ties."""
        idle = [s for s in self.slots if self.state(s, now)[0] == "idle"]
        load = Counter(s.agent.name for s in self.slots if s.task)
        self.turn += 1
        turn = {s.id: (i - self.turn) % len(self.slots) for i, s in enumerate(self.slots)}
        return sorted(idle, key=lambda s: (load[s.agent.name], turn[s.id]))

    def known(self) -> set[str]:
        """Agents a task may wait for; one preferring any other goes to whoever is free."""
        return {k for s in self.slots if s.agent.name not in self.unavailable for k in (s.agent.name, s.agent.type)}

    def rows(self, now: float) -> list[tuple[Any, ...]]:
        """Each slot as the agents table stores it (the column order of queue.PUT_SLOT)."""
        rows = []
        for s in self.slots:
            task = s.task and s.task.id
            rows.append(
                (*self.state(s, now), task, s.pid, s.rss_mb, s.since, s.tasks_done, s.cost_usd, s.id, s.agent.type)
            )
        return rows
