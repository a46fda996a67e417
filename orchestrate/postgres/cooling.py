"""A rate limit cools its agent on every machine: the account behind it is the same everywhere.

An agent's key is its entry's name unless `cooling_key` says otherwise, so entries that share an
account (one subscription behind two entries, say) cool together, here and on the other heads."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from orchestrate.core.errors import QueueBusy
from orchestrate.core.extension import Extension
from orchestrate.postgres import Settings

if TYPE_CHECKING:
    from orchestrate.core.attempt import Attempt
    from orchestrate.core.head import Head

# A longer rest wins: two heads limited at once keep the later reset.
COOL = """INSERT INTO cooling (key, until, head) VALUES (?, ?, ?)
    ON CONFLICT (key) DO UPDATE SET until = excluded.until, head = excluded.head WHERE cooling.until < excluded.until"""


class SharedCooling(Extension):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def started(self, head: Head) -> None:
        self.head = head
        self.names = {s.agent.name for s in head.distributor.slots}

    def key(self, agent: str) -> str:
        return self.settings.cooling_keys.get(agent, agent)

    async def settled(self, attempt: Attempt) -> None:
        if attempt.verdict is None or (until := attempt.verdict.cooling_until) is None:
            return
        key = self.key(attempt.slot.agent.name)
        self.cool(key, until)  # at once for this head's agents of the same key
        try:
            await self.head.queue.write((COOL, (key, until, self.settings.head)))
        except QueueBusy as exc:  # the next limit another head meets cools it there all the same
            self.head.once(f"cannot share the rate limit of {key}: {exc}")

    async def beat(self) -> None:
        for key, until in await self.head.queue.read("SELECT key, until FROM cooling WHERE until > ?", time.time()):
            self.cool(key, until)

    def cool(self, key: str, until: float) -> None:
        cooling = self.head.distributor.cooling
        for name in self.names:
            if self.key(name) == key and cooling.get(name, 0) < until:
                cooling[name] = until
