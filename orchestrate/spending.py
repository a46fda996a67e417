"""The spending cap, task_queue.max_cost_usd: once the runs' total since the cap's count began
reaches it, the head claims nothing more (running agents finish). Raising the cap in config.yaml,
which the head reads again when the file changes, or `orchestrate retry`, which begins a fresh
count, lets work go on."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from orchestrate.core.errors import OrchestrateError, QueueBusy
from orchestrate.core.extension import Extension
from orchestrate.shapes import held

if TYPE_CHECKING:
    from orchestrate.core.attempt import Attempt
    from orchestrate.core.config import Config
    from orchestrate.core.head import Head

log = logging.getLogger(__name__)
SPENT = "SELECT cost_usd - counted_from FROM spending"


class Spending(Extension):
    def __init__(self, cfg: Config, cap: float | None) -> None:
        self.cfg, self.cap = cfg, cap
        self.read_at = self.mtime()

    async def started(self, head: Head) -> None:
        self.head = head
        await self.check()

    async def settled(self, attempt: Attempt) -> None:
        await self.check()

    async def beat(self) -> None:
        await self.check()

    async def check(self) -> None:
        if (mtime := self.mtime()) != self.read_at:  # the cap may have been raised
            self.read_at = mtime
            self.cap = self.current_cap()
        was = self.head.held.get("spending")
        try:  # without a cap nothing is held: no need to read the total after every run
            why = held((await self.head.queue.read(SPENT))[0][0], self.cap) if self.cap is not None else None
        except QueueBusy:  # another process holds the queue: as things were, until the next look
            return
        if why:
            self.head.held["spending"] = why
            if why != was:
                log.warning("claiming is held: %s", why)
        elif was:
            del self.head.held["spending"]
            log.info("the spending cap allows more: claiming again")
            self.head.wake.set()

    def mtime(self) -> float | None:
        try:
            return self.cfg.path.stat().st_mtime
        except OSError:
            return None

    def current_cap(self) -> float | None:
        from orchestrate import configfile
        from orchestrate.runs import settings

        try:
            return settings(configfile.load(self.cfg.path)).max_cost_usd
        except OrchestrateError as exc:  # a half-written edit: keep the cap the head has
            log.warning("config.yaml: %s; keeping task_queue.max_cost_usd at %s", exc, self.cap)
            return self.cap
