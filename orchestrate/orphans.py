"""Orphans: processes an agent left that escaped both its process group and the environment
marker the head's sweep looks for (a double fork through `setsid env -i`, say).

The head becomes the child subreaper of everything it starts, so such a process comes to the head
when its parent dies, not to init. Each adopted tree is killed once no task that was running when
it started is still running (start times compared on the boot clock /proc uses), so another
task's orphan is never taken; and once every attempt has settled, whatever is left goes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrate.core.extension import Extension
from orchestrate.core.process import send_signal

if TYPE_CHECKING:
    from orchestrate.core.attempt import Attempt
    from orchestrate.core.head import Head

log = logging.getLogger(__name__)
PR_SET_CHILD_SUBREAPER = 36  # from <linux/prctl.h>


def adopt_orphans() -> None:
    """Make this process the child subreaper of everything it starts (Linux): a process whose
    parent dies comes to it, not to init, however it left its session or cleared its environment."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def adopted() -> list[tuple[float, list[int]]]:
    """The trees of this process's children in sessions other than its own (agents, and orphans
    it adopted): [(the latest the root can have started, in seconds since boot, [the tree's pids])]."""
    me, session, tick = os.getpid(), os.getsid(0), os.sysconf("SC_CLK_TCK")
    roots, children = [], defaultdict(list)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_bytes()
            fields = stat[stat.rindex(b")") + 2 :].split()  # after the command's name, which may hold anything
            parent, pid = int(fields[1]), int(entry.name)
            children[parent].append(pid)
            if parent == me and int(fields[3]) != session:
                roots.append(((int(fields[19]) + 1) / tick, pid))
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    trees = []
    for born, root in roots:
        tree = [root]
        for pid in tree:  # grows as it goes: the whole tree, breadth first
            tree.extend(children[pid])
        trees.append((born, tree))
    return trees


class Orphans(Extension):
    def __init__(self) -> None:
        self.since: dict[str, float] = {}  # slot id: when its attempt began, in seconds since boot

    async def started(self, head: Head) -> None:
        self.head = head
        adopt_orphans()

    async def workdir(self, attempt: Attempt) -> None:
        self.since[attempt.slot.id] = time.clock_gettime(time.CLOCK_BOOTTIME)  # as /proc dates a process

    async def beat(self) -> None:
        await self.reap()

    async def stopping(self) -> None:
        await self.reap()  # every attempt has settled: nothing adopted can be a running task's

    async def reap(self) -> None:
        busy = [self.since.get(s.id, 0.0) for s in self.head.distributor.slots if s.task]
        for born, tree in await asyncio.to_thread(adopted):
            # An agent, or an orphan of any task that was running when it started, is left alone.
            if all(since >= born for since in busy):
                log.info("killing %d process(es) left behind by an agent that is gone", len(tree))
                for pid in tree:
                    send_signal(pid, signal.SIGKILL, group=False)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(tree[0], os.WNOHANG)  # adopted: ours to reap, now or at the next beat
