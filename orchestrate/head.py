"""The head node: one asyncio process that claims tasks and runs each through an agent CLI."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import signal
import sys
import time
import warnings
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from orchestrate import agents, context, process
from orchestrate.agents import Result
from orchestrate.config import Config
from orchestrate.distributor import Distributor, Slot
from orchestrate.errors import AgentUnavailable, OrchestrateError
from orchestrate.queue import Queue
from orchestrate.store import Task

log = logging.getLogger(__name__)
HEARTBEAT_S = 1.0  # heartbeat, lease renewal, memory sampling and the sweep for strays
WATCH_S = 0.05  # how often the head looks for another process's commit (add, cancel)
COOLING_S = 60.0  # a rate limit that names no reset time cools its agent this long
DETACHING = ("claude", "gemini")  # CLIs known to leave tool processes running in their own session


class Head:
    def __init__(
        self, cfg: Config, *, until_idle: bool = False, clock: Callable[[], float] = time.time
    ) -> None:
        self.cfg, self.until_idle, self.now = cfg, until_idle, clock
        self.db = cfg.task_queue.database.resolve()
        self.distributor = Distributor(cfg.agents)
        self.running: dict[int, tuple[asyncio.Task[None], asyncio.Future[str], Slot]] = {}
        self.wake = asyncio.Event()
        self.stopping: str | None = None  # "now" or "drain"
        self.failures = 0

    async def run(self) -> int:
        """Work the queue until stopped (or, with until_idle, until nothing is left): the exit status."""
        lock = _lock(self.db)
        self.cfg.runtime_dir.mkdir(parents=True, exist_ok=True)
        pid_file = self.cfg.runtime_dir / "head.pid"
        try:
            self.queue = await Queue.open(self.db)
            self._sweep(set())  # a dead head's agents die before their tasks are handed out again
            self._check_commands()
            slots = [
                (s.id, s.agent.type, *self.distributor.state(s, self.now())) for s in self.distributor.slots
            ]
            log_file = str(self.cfg.runtime_dir / "head.log")
            recovered = await self.queue.register(os.getpid(), log_file, slots, self.now())
            if recovered:
                log.info(
                    "recovered %d task(s) left running by a head that stopped; they are pending again",
                    recovered,
                )
            pid_file.write_text(f"{os.getpid()}\n")
            log.info(
                "head %d working %s with %s",
                os.getpid(),
                self.db,
                ", ".join(s.id for s in self.distributor.slots),
            )
            loop = asyncio.get_running_loop()
            for sig, how in ((signal.SIGTERM, "now"), (signal.SIGINT, "now"), (signal.SIGUSR1, "drain")):
                loop.add_signal_handler(sig, self.stop, how)
            beat = asyncio.ensure_future(self._heartbeat())
            try:
                await self._loop()
            finally:
                beat.cancel()
                await self._wind_down()
            left = self.until_idle and await self.queue.pending()
            return 1 if self.failures or left else 0
        finally:
            with contextlib.suppress(OSError):
                pid_file.unlink()
            if hasattr(self, "queue"):
                await self.queue.close()
            os.close(lock)

    def stop(self, how: str) -> None:
        """Stop claiming; "now" interrupts running agents (their tasks go back to pending), "drain" waits."""
        if self.stopping != "now":
            log.info("stopping (%s): %d task(s) running", how, len(self.running))
            self.stopping = how
        if how == "now":
            for _, stop, _ in self.running.values():
                if not stop.done():
                    stop.set_result("stopped")
        self.wake.set()

    async def _loop(self) -> None:
        version = await self.queue.data_version()
        while not self.stopping:
            await self._fill()
            if self.until_idle and not self.running and not await self._can_progress():
                return
            deadline = time.monotonic() + 1.0  # also re-check backoffs, cooling and aging now and then
            while not self.wake.is_set() and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), WATCH_S)
                if (latest := await self.queue.data_version()) != version:
                    version = latest
                    await self._stop_cancelled()
                    break
            self.wake.clear()

    async def _can_progress(self) -> bool:
        if not any(s.agent.name not in self.distributor.unavailable for s in self.distributor.slots):
            log.error("no agent can run: every configured agent is unavailable")
            self.failures += 1
            return False
        return await self.queue.runnable() > 0

    async def _fill(self) -> None:
        while not self.stopping and (takers := self.distributor.takers(self.now())):
            task = await self.queue.claim(takers, self.distributor.known(), self.now(), self._assign)
            if task is None:
                return
            slot = self.picked
            slot.task, slot.since, slot.pid = task.id, self.now(), None
            stop: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self.running[task.id] = (asyncio.ensure_future(self._work(task, slot, stop)), stop, slot)

    def _assign(self, task: Task) -> tuple[str, str]:
        """Inside the claim's transaction: the slot that runs `task`, and its log file."""
        self.picked = self.distributor.pick(task.agent_type, self.now())
        return self.picked.id, self._relative(self._log_path(task))

    async def _stop_cancelled(self) -> None:
        if self.running:
            for task_id, status in (await self.queue.statuses(self.running)).items():
                stop = self.running[task_id][1]
                if status == "cancelled" and not stop.done():
                    stop.set_result("cancelled")

    async def _work(self, task: Task, slot: Slot, stop: asyncio.Future[str]) -> None:
        try:
            await self._attempt(task, slot, stop)
        except Exception:
            log.exception("%s: unexpected error; the task goes back to pending", task.name)
            slot.task = None
            with contextlib.suppress(Exception):
                await self._requeue(task, None)
        finally:
            slot.task = slot.pid = slot.rss_mb = None
            del self.running[task.id]
            self.wake.set()

    async def _attempt(self, task: Task, slot: Slot, stop: asyncio.Future[str]) -> None:
        agent = slot.agent
        adapter = agents.adapter(agent.type)
        text = context.prompt(task, self.cfg)
        on_stdin = agents.prompt_on_stdin(agent.type, agent.command, text)
        argv = adapter.argv(agent.command, None if on_stdin else text)
        log_path = self._log_path(task)
        timeout = task.timeout_seconds or agent.timeout_seconds or self.cfg.task_queue.timeout_minutes * 60
        env = {**os.environ, **agent.env, process.QUEUE_VAR: str(self.db), process.TASK_VAR: task.name}
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab", buffering=0) as out:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            out.write(f"=== orchestrate: attempt {task.attempts + 1} on {slot.id} at {stamp} ===\n".encode())
            parser = adapter.Reader()
            try:
                code, why = await process.run(
                    argv,
                    cwd=str(self.cfg.root),
                    env=env,
                    stdin=text.encode() if on_stdin else None,
                    log=out,
                    parser=parser,
                    timeout=timeout,
                    grace=self.cfg.task_queue.kill_grace_seconds,
                    stop=stop,
                )
            except AgentUnavailable as exc:
                self._unavailable(agent.name, str(exc))
                await self._requeue(task, str(exc))
                return
        if why or agent.type in DETACHING:
            self._sweep({task.name})  # at once; other strays are found by the next heartbeat
        await self._settle(task, slot, parser.finish(code), why, timeout)

    async def _settle(self, task: Task, slot: Slot, result: Result, why: str | None, timeout: float) -> None:
        now, name = self.now(), task.name
        slot.cost_usd += result.cost_usd or 0
        if why == "cancelled":
            log.info("%s: cancelled; its agent was stopped", name)
            return
        if why == "stopped":
            return await self._requeue(task, None)
        if result.limited_until is not None and why is None:
            until = max(result.limited_until, now + 5) if result.limited_until else now + COOLING_S
            self.distributor.cooling[slot.agent.name] = until
            log.warning("%s: %s hit a rate limit; cooling until %s", name, slot.agent.name, time.ctime(until))
            return await self._requeue(task, result.error)
        error = {"timeout": f"timed out after {timeout:g} s", "memory": self._memory_error(slot)}.get(
            why or "", result.error
        )
        attempts, ok = task.attempts + 1, result.ok and why is None
        status = "completed" if ok else "pending" if attempts <= task.max_retries else "failed"
        delay = self.cfg.task_queue.retry_delay_seconds * 2 ** (attempts - 1)
        slot.tasks_done += 1
        self.failures += status == "failed"
        output = None
        if status != "pending":
            output = self._write_output(task, slot, status, attempts, result, error)
        log.info("%s: %s on %s%s", name, status, slot.id, f": {error}" if error else "")
        await self.queue.update(
            task.id,
            status=status,
            attempts=attempts,
            error=error,
            result=result.message,
            cost_usd=result.cost_usd,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            session_id=result.session_id,
            output_file=output,
            pid=None,
            not_before=now + delay if status == "pending" else 0,
            finished_at=None if status == "pending" else now,
        )

    def _write_output(
        self, task: Task, slot: Slot, status: str, attempts: int, result: Result, error: str | None
    ) -> str | None:
        try:
            path = context.write_output(
                task,
                self.cfg,
                status,
                slot.id,
                result.message,
                attempts=attempts,
                error=error,
                cost_usd=result.cost_usd,
            )
        except OSError as exc:
            log.error("%s: cannot write its output file: %s", task.name, exc)
            return None
        return self._relative(path)

    def _log_path(self, task: Task) -> Path:
        return self.cfg.runtime_dir / "logs" / f"{task.name}.log"

    def _relative(self, path: Path) -> str:
        return str(path.relative_to(self.cfg.root)) if path.is_relative_to(self.cfg.root) else str(path)

    def _memory_error(self, slot: Slot) -> str:
        return f"used {slot.rss_mb or 0:.0f} MB, over performance.max_memory_mb ({self.cfg.performance.max_memory_mb})"

    async def _requeue(self, task: Task, error: str | None) -> None:
        """Back to pending without spending an attempt: the run was not the task's fault."""
        fields = {"error": error} if error else {}
        await self.queue.update(task.id, status="pending", agent=None, pid=None, started_at=None, **fields)

    def _slots(self) -> list[tuple[object, ...]]:
        return self.distributor.rows(self.now())

    def _unavailable(self, name: str, why: str) -> None:
        if name not in self.distributor.unavailable:
            log.error("agent %s is unavailable: %s", name, why)
            self.distributor.unavailable[name] = why

    def _check_commands(self) -> None:
        for agent in {s.agent.name: s.agent for s in self.distributor.slots}.values():
            path = os.environ.get("PATH") if "PATH" not in agent.env else agent.env["PATH"]
            if shutil.which(agent.command[0], path=path) is None:
                self._unavailable(agent.name, f"{agent.command[0]!r} is not installed or not on PATH")

    def _sweep(self, finished: set[str]) -> None:
        """Sample the agents' memory and kill what no running task owns (or what `finished` left)."""
        owners = {t: s for t, (_, _, s) in self.running.items()}
        by_name = {f"task_{t:03d}": t for t in owners}
        limit = self.cfg.performance.max_memory_mb
        for name, procs in process.strays(str(self.db)).items():
            task_id = by_name.get(name)
            if task_id is None or name in finished:
                log.info("killing %d process(es) left behind by %s", len(procs), name or "an agent")
                process.kill([pid for pid, _ in procs])
                continue
            slot = owners[task_id]
            slot.rss_mb = sum(kib for _, kib in procs) / 1024
            slot.pid = slot.pid or min(pid for pid, _ in procs)
            stop = self.running[task_id][1]
            if limit and slot.rss_mb > limit and not stop.done():
                stop.set_result("memory")

    async def _heartbeat(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                self._sweep(set())
                await self.queue.heartbeat(self.now(), list(self.running), self._slots())
            await asyncio.sleep(HEARTBEAT_S)

    async def _wind_down(self) -> None:
        if self.running and self.stopping == "drain":
            log.info("waiting for %d running task(s) to finish", len(self.running))
        await asyncio.gather(*(work for work, _, _ in self.running.values()), return_exceptions=True)
        self._sweep(set())
        await self.queue.unregister()
        log.info("head %d stopped", os.getpid())


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


def serve(cfg: Config, *, until_idle: bool = False) -> int:
    """Run a head node in this process until it stops; its exit status."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return asyncio.run(_with_pidfd_watcher(Head(cfg, until_idle=until_idle).run()))


async def _with_pidfd_watcher(work: Coroutine[Any, Any, int]) -> int:
    """Before 3.12, asyncio waits for each child from a thread of its own; pidfds are cheaper."""
    if sys.version_info < (3, 12) and hasattr(os, "pidfd_open"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            watcher = asyncio.PidfdChildWatcher()
            watcher.attach_loop(asyncio.get_running_loop())
            asyncio.set_child_watcher(watcher)
    return await work
