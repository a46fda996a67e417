"""Agent slots and who takes the next task: type affinity, then the least-loaded, round-robin."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

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
    rss_mb: float | None = None

    def interrupt(self, why: Stop | None) -> None:
        """Stop the agent running here, for `why`; None does nothing."""
        if why and self.stop and not self.stop.done():
            self.stop.set_result(why)


class Distributor:
    def __init__(self, agents: tuple[AgentConfig, ...]) -> None:
        self.slots = [Slot(f"{a.name}-{n}", a) for a in agents for n in range(1, a.max_instances + 1)]
        self.cooling: dict[str, float] = {}  # agent name -> until when
        self.limits: Counter[str] = Counter()  # agent name -> rate limits in a row
        self.unavailable: dict[str, str] = {}  # agent name -> why
        self.turn = 0

    def free(self, now: float) -> list[Slot]:
        """The idle slots in the order they take tasks: least-loaded agent first, in turn among ties."""
        idle = [s for s in self.slots if not s.task and not self.resting(s.agent.name, now)]
        load = Counter(s.agent.name for s in self.slots if s.task)
        self.turn += 1
        turn = {s.id: (i - self.turn) % len(self.slots) for i, s in enumerate(self.slots)}
        return sorted(idle, key=lambda s: (load[s.agent.name], turn[s.id]))

    def known(self) -> set[str]:
        """Agents a task may wait for; one preferring any other goes to whoever is free."""
        return {k for s in self.slots if s.agent.name not in self.unavailable for k in (s.agent.name, s.agent.type)}

    def resting(self, name: str, now: float) -> bool:
        """Whether agent `name` takes no task now: unavailable, or cooling after a rate limit."""
        return name in self.unavailable or self.cooling.get(name, 0) > now
