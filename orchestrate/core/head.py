"""The head node: one asyncio process that claims tasks and runs each through an agent CLI.

The loop only claims, watches and beats; what happens to a claimed task is core/attempt.py, and
every feature beyond running an agent in the project directory is an extension handed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from orchestrate.core import attempt, command, process
from orchestrate.core.config import Config
from orchestrate.core.distributor import Distributor, Slot
from orchestrate.core.errors import OrchestrateError, QueueBusy
from orchestrate.core.extension import Extension
from orchestrate.core.queue import Queue
from orchestrate.core.states import Stop
from orchestrate.core.store import Task

log = logging.getLogger(__name__)
HEARTBEAT_S = 1.0  # heartbeat, memory sampling and the sweep for strays
HOOKS = ("workdir", "before", "after", "accept", "record", "settled", "beat", "idle")
WATCH_S = 0.05  # how often the head looks for another process's commit (add, cancel)


class Head:
    queue_type: Any = Queue  # called with the queue file; a PostgreSQL queue for several heads is orchestrate/postgres

    def __init__(self, cfg: Config, extensions: Iterable[Extension] = (), adapters: Mapping[str, Any] = {}) -> None:
        self.cfg, self.extensions, self.now = cfg, tuple(extensions), time.time
        # Each hook's implementations, in order: an attempt awaits only the hooks an extension defines.
        plain = {h: getattr(Extension, h) for h in HOOKS}
        self.hooks = {h: [getattr(x, h) for x in self.extensions if getattr(type(x), h) is not plain[h]] for h in HOOKS}
        self.adapters: dict[str, Any] = {"command": command, **adapters}  # each an Adapter (core/agent.py)
        self.db = cfg.task_queue.database.resolve()
        self.environ = dict(os.environ)  # read once: os.environ decodes every item each time
        self.distributor = Distributor(cfg.agents)
        self.wake = asyncio.Event()
        self.stopping: str | None = None  # "now" or "drain"
        self.held: dict[str, str] = {}  # why extensions hold claiming (a spending cap, a pause), by extension
        self.failures = 0
        self.problems: set[str] = set()  # logged once each
        self.started: list[Extension] = []

    @property
    def busy(self) -> dict[int, Slot]:
        return {s.task.id: s for s in self.distributor.slots if s.task}

    async def run(self) -> int:
        """Work the queue until stopped: the exit status, 1 if any task failed for good."""
        self.cfg.runtime_dir.mkdir(parents=True, exist_ok=True)
        self.lock, pid_file = _lock(self.db), self.cfg.runtime_dir / "head.pid"
        self.queue: Queue = self.queue_type(self.db)
        self.queue.logs = self.relative(self.cfg.runtime_dir / "logs")  # as the task rows name the agents' logs
        try:
            await self._start(pid_file)
            beat = asyncio.ensure_future(self._heartbeat())  # cancelled by asyncio.run at the end
            try:
                await self._loop()
            finally:
                await asyncio.gather(*(s.work for s in self.busy.values() if s.work), return_exceptions=True)
                beat.cancel()
                await self.sweep()
                with contextlib.suppress(QueueBusy, sqlite3.Error):  # unwritable: the next head recovers it
                    await self.queue.write(("DELETE FROM head", ()))
            return 1 if self.failures else 0
        finally:
            for ext in reversed(self.started):
                try:
                    await ext.stopping()
                except Exception:
                    log.exception("%s could not stop", type(ext).__name__)
            pid_file.unlink(missing_ok=True)
            await self.queue.close()
            os.close(self.lock)
            log.info("head %d stopped", os.getpid())

    async def _start(self, pid_file: Path) -> None:
        await self.sweep()  # a dead head's agents die before their tasks are handed out again
        for ext in self.extensions:  # before registering: an extension that cannot start fails the start
            self.started.append(ext)
            await ext.started(self)
        if recovered := await self.queue.register(os.getpid(), str(self.cfg.runtime_dir / "head.log"), self.now()):
            log.info("%d task(s) left running by a head that died are pending again", recovered)
        pid_file.write_text(f"{os.getpid()}\n")
        log.info("head %d on %s: %s", os.getpid(), self.db, ", ".join(s.id for s in self.distributor.slots))
        for sig, how in ((signal.SIGTERM, "now"), (signal.SIGINT, "now"), (signal.SIGUSR1, "drain")):
            asyncio.get_running_loop().add_signal_handler(sig, self.stop, how)

    def stop(self, how: str) -> None:
        """Stop claiming; "now" interrupts running agents (their tasks go back to pending), "drain" waits."""
        log.info("stopping (%s) with %d task(s) running", how, len(self.busy))
        self.stopping = "now" if "now" in (how, self.stopping) else how
        for slot in self.busy.values():
            slot.interrupt(Stop.STOPPED if self.stopping == "now" else None)
        self.wake.set()

    async def _loop(self) -> None:
        version = await self.queue.data_version()
        while not self.stopping or self.busy:  # while draining, cancellations are still watched for
            if not self.stopping:
                try:
                    await self._fill()
                except QueueBusy as exc:  # another process holds the queue; claim again on the next round
                    log.warning("cannot claim: %s", exc)
                except sqlite3.Error as exc:
                    self.broken("cannot claim a task", exc)
                if not self.busy:
                    await self.each("idle")
            deadline = time.monotonic() + 1.0  # also re-check backoffs, cooling and aging now and then
            while not self.wake.is_set() and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), WATCH_S)
                if (latest := await self.queue.data_version()) != version:
                    version = latest
                    await self._interrupt_moved()
                    break
            self.wake.clear()

    async def _interrupt_moved(self) -> None:
        """Stop every agent whose task's row no longer runs on its claim: cancelled, or retried."""
        claims = {task_id: slot.task.claim for task_id, slot in self.busy.items() if slot.task}
        for task_id in await self.queue.positions(claims) if claims else ():
            if slot := self.busy.get(task_id):
                slot.interrupt(Stop.CANCELLED)

    async def _fill(self) -> None:
        nothing_for: set[str] = set()  # agents that found no task they may run, this round
        while not self.stopping and not self.held:
            free = (s for s in self.distributor.free(self.now()) if s.agent.name not in nothing_for)
            if (slot := next(free, None)) is None:
                return
            known, busy = self.distributor.known(), list(self.busy)
            takes = slot.agent.name, slot.agent.type  # what a task may prefer to run here
            if (task := await self.queue.claim(slot.id, takes, known, self.now(), busy)) is None:
                nothing_for.add(slot.agent.name)
                continue
            slot.task, slot.stop = task, asyncio.get_running_loop().create_future()
            slot.work = asyncio.ensure_future(self._work(slot, task))

    async def _work(self, slot: Slot, task: Task) -> None:
        try:
            await attempt.work(self, slot, task)
        except Exception:  # a bug in settling: the row stays running, and the next head recovers it
            log.exception("%s: could not settle its attempt", task.name)
        finally:
            slot.task = slot.pid = slot.rss_mb = slot.stop = slot.work = None
            self.wake.set()

    async def each(self, hook: str, *args: Any) -> None:
        """Call every extension's `hook` (one of HOOKS) in turn, awaiting each."""
        for call in self.hooks[hook]:
            await call(*args)

    async def current(self, task: Task) -> bool:
        """Whether `task`'s row still runs on the claim this head holds."""
        return not await self.queue.positions({task.id: task.claim})

    def broken(self, what: str, exc: object) -> None:
        """The queue cannot be written (a full disk, a damaged file, or gone): stop; the next head recovers its tasks."""
        log.error("%s in %s (%s); stopping", what, self.db, exc)
        self.failures += 1
        self.stop("now")

    def once(self, problem: str) -> None:
        """Log `problem` the first time it happens: a full disk would otherwise fill the log too."""
        if problem not in self.problems:
            self.problems.add(problem)
            log.error("%s", problem)

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.cfg.root)) if path.is_relative_to(self.cfg.root) else str(path)

    def unavailable(self, name: str, why: str) -> None:
        self.once(f"agent {name} is unavailable: {why}")
        self.distributor.unavailable.setdefault(name, why)

    async def sweep(self, finished: str = "") -> None:
        """Sample the agents' memory; kill processes no running task owns (or that `finished` left)."""
        strays = await asyncio.to_thread(process.strays, str(self.db))  # reads every process in /proc
        owners = {s.task.name: s for s in self.busy.values() if s.task and s.task.name != finished}
        for name, procs in strays.items():
            if (slot := owners.get(name)) is None:
                log.info("killing %d process(es) left behind by %s", len(procs), name or "an agent")
                for pid, _ in procs:
                    process.send_signal(pid, signal.SIGKILL, group=False)
                continue
            slot.rss_mb = sum(kib for _, kib in procs) / 1024  # the watchdog extension acts on it

    async def _heartbeat(self) -> None:
        while True:
            try:
                if self.stopping != "now" and not os.fstat(self.lock).st_nlink:  # another head could start there
                    raise sqlite3.DatabaseError("the queue file was deleted, or another renamed over it")
                await self.sweep()
                await self.queue.heartbeat(self.now())
                await self.each("beat")
            except QueueBusy as exc:
                log.warning("heartbeat: %s", exc)
            except sqlite3.Error as exc:  # a full disk, or the file gone: as when a result cannot be recorded
                self.broken("the head cannot beat", exc)
            except Exception:  # a bug: say so, and beat again
                log.exception("heartbeat failed")
            await asyncio.sleep(HEARTBEAT_S)


def _lock(db: Path) -> int:
    """Hold an exclusive flock on the queue file itself: one head per queue, freed even by kill -9.

    SQLite locks with fcntl, which flock does not disturb; the descriptor is closed last.
    """
    db.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(db, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OrchestrateError(f"a head is already running on {db}; `orchestrate stop` stops it") from None
    return fd
