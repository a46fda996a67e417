"""The watchdog: stops an agent that has printed nothing for its idle timeout, or whose processes
hold more memory than performance.max_memory_mb, as a timeout stops one: the attempt fails (and
is retried, while retries are left) with an error that says which limit it crossed.

Silence is measured on the task's log, which every byte the agent prints reaches; the clock starts
again when a new process of the attempt starts (a check after the agent, say)."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from orchestrate.configfile import RunSettings
from orchestrate.core.extension import Extension
from orchestrate.core.states import Stop

if TYPE_CHECKING:
    from orchestrate.core.attempt import Attempt
    from orchestrate.core.head import Head


def running(pid: int) -> bool:
    """Whether the attempt's latest process still runs (an ended one is reaped at once)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: the pid was reused
        return False
    return True


class Watchdog(Extension):
    def __init__(self, settings: RunSettings) -> None:
        self.memory_mb, self.settings = settings.max_memory_mb, settings
        self.attempts: dict[str, Attempt] = {}  # by slot id, while they run
        self.started_at: dict[str, tuple[int, float]] = {}  # slot id: (the process it last saw start, when)

    async def started(self, head: Head) -> None:
        self.head = head

    async def workdir(self, attempt: Attempt) -> None:
        self.attempts[attempt.slot.id] = attempt

    async def settled(self, attempt: Attempt) -> None:
        if self.attempts.get(attempt.slot.id) is attempt:
            del self.attempts[attempt.slot.id]

    async def beat(self) -> None:
        now = time.monotonic()
        for slot_id, attempt in list(self.attempts.items()):
            slot = attempt.slot
            if slot.pid is None or attempt.over or not running(slot.pid):  # only a process that runs now
                continue
            if self.started_at.get(slot_id, (None,))[0] != slot.pid:
                self.started_at[slot_id] = (slot.pid, now)
            quiet = now - max(attempt.log.written, self.started_at[slot_id][1])
            idle = self.settings.idle_timeout(slot.agent.name)
            if self.memory_mb and (slot.rss_mb or 0) > self.memory_mb:
                attempt.fail(f"used {slot.rss_mb:.0f} MB, over performance.max_memory_mb ({self.memory_mb})")
                slot.interrupt(Stop.MEMORY)
            elif idle and quiet >= idle:
                attempt.fail(f"no output for {idle:g} s")
                slot.interrupt(Stop.IDLE)
