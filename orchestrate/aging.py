"""Starvation prevention: a low-priority task that has waited half an hour is claimed as a
normal one. Claims sort by the stored rank, so promoting is a write now and then, not a cost on
every claim."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrate.core.extension import Extension

if TYPE_CHECKING:
    from orchestrate.core.head import Head

AGING_S = 30 * 60
# through the index of the low tasks waiting, however many others do (named: SQLite keeps no statistics)
PROMOTE = "UPDATE tasks INDEXED BY tasks_aging SET rank = 1 WHERE status = 'pending' AND rank = 2 AND created_at <= ?"


class Aging(Extension):
    async def started(self, head: Head) -> None:
        self.head = head

    async def beat(self) -> None:
        await self.head.queue.write((PROMOTE, (self.head.now() - AGING_S,)))
