"""`orchestrate pause`: while the queue's `paused` row is there the claim takes nothing (core/queue.py);
this feature says so in the head's log and holds claiming, so that `orchestrate run` ends rather
than waits, and claiming starts again as soon as the row goes."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from orchestrate.core.errors import QueueBusy
from orchestrate.core.extension import Extension

if TYPE_CHECKING:
    from orchestrate.core.head import Head

log = logging.getLogger(__name__)
HELD = "the queue is paused (`orchestrate resume` goes on)"


class Pause(Extension):
    async def started(self, head: Head) -> None:
        self.head = head
        await self.check()

    async def beat(self) -> None:
        await self.check()

    async def idle(self) -> None:
        await self.check()

    async def check(self) -> None:
        try:
            paused = bool(await self.head.queue.read("SELECT 1 FROM paused"))
        except QueueBusy:  # another process holds the queue: as things were, until the next look
            return
        if paused and "pause" not in self.head.held:
            self.head.held["pause"] = HELD
            log.info("paused: claiming nothing until `orchestrate resume`")
        elif not paused and "pause" in self.head.held:
            del self.head.held["pause"]
            log.info("resumed: claiming again")
            self.head.wake.set()
