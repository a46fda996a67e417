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
from pathlib import Path

from orchestrate import agents, context, process, workspace
from orchestrate.agents import Result
from orchestrate.config import Config
from orchestrate.distributor import Distributor, Slot
from orchestrate.errors import AgentUnavailable, OrchestrateError, QueueBusy
from orchestrate.queue import Queue
from orchestrate.store import Task

log = logging.getLogger(__name__)
HEARTBEAT_S = 1.0  # heartbeat, lease renewal, memory sampling and the sweep for strays
WATCH_S = 0.05  # how often the head looks for another process's commit (add, cancel)
COOLING_S = 60.0  # a rate limit that names no reset time cools its agent this long
PUBLISH_S = 0.5  # completed_tasks.json and current_state.md are rewritten at most this often
RECENT = 20  # tasks listed in current_state.md; earlier ones are counted
DETACHING = ("claude", "gemini")  # CLIs known to leave tool processes running in their own session


class Head:
    def __init__(self, cfg: Config, *, until_idle: bool = False) -> None:
        self.cfg, self.until_idle, self.now = cfg, until_idle, time.time
        self.db = cfg.task_queue.database.resolve()
        self.distributor = Distributor(cfg.agents)
        self.wake = asyncio.Event()
        self.stopping: str | None = None  # "now" or "drain"
        self.failures = 0
        self.git = False  # whether the project is a git repository: then changes are read from it
        self.completed: dict[int, str] = {}  # completed_tasks.json's entries, by task id
        self.unpublished = asyncio.Event()

    @property
    def busy(self) -> dict[int, Slot]:
        return {s.task.id: s for s in self.distributor.slots if s.task}

    async def run(self) -> int:
        """Work the queue until stopped (or, with until_idle, until nothing is left): the exit status."""
        lock, pid_file = _lock(self.db), self.cfg.runtime_dir / "head.pid"
        self.cfg.runtime_dir.mkdir(parents=True, exist_ok=True)
        self.queue = await Queue.open(self.db)
        try:
            self._sweep()  # a dead head's agents die before their tasks are handed out again
            for agent in {s.agent.name: s.agent for s in self.distributor.slots}.values():
                if shutil.which(agent.command[0], path=agent.env.get("PATH", os.environ.get("PATH"))) is None:
                    self._unavailable(agent.name, f"{agent.command[0]!r} is not installed or not on PATH")
            log_file = str(self.cfg.runtime_dir / "head.log")
            if recovered := await self.queue.register(os.getpid(), log_file, self._slots(), self.now()):
                log.info("%d task(s) left running by a head that died are pending again", recovered)
            pid_file.write_text(f"{os.getpid()}\n")
            log.info(
                "head %d on %s: %s", os.getpid(), self.db, ", ".join(s.id for s in self.distributor.slots)
            )
            for sig, how in ((signal.SIGTERM, "now"), (signal.SIGINT, "now"), (signal.SIGUSR1, "drain")):
                asyncio.get_running_loop().add_signal_handler(sig, self.stop, how)
            self.git = await workspace.git(self.cfg.root, "rev-parse", "--git-dir") is not None
            for task in await self.queue.finished():
                self.completed[task.id] = context.completed_entry(task, task.output_file)
            helpers = [asyncio.ensure_future(self._heartbeat()), asyncio.ensure_future(self._publish())]
            try:
                await self._loop()
            finally:
                await asyncio.gather(*(s.work for s in self.busy.values() if s.work), return_exceptions=True)
                for helper in helpers:
                    helper.cancel()
                await self._publish_now()
                self._sweep()
                await self.queue.unregister()
                log.info("head %d stopped", os.getpid())
            return 1 if self.failures or (self.until_idle and await self.queue.pending()) else 0
        finally:
            pid_file.unlink(missing_ok=True)
            await self.queue.close()
            os.close(lock)

    def stop(self, how: str) -> None:
        """Stop claiming; "now" interrupts running agents (their tasks go back to pending), "drain" waits."""
        log.info("stopping (%s) with %d task(s) running", how, len(self.busy))
        self.stopping = "now" if "now" in (how, self.stopping) else how
        for slot in self.busy.values():
            if how == "now" and slot.stop and not slot.stop.done():
                slot.stop.set_result("stopped")
        self.wake.set()

    async def _loop(self) -> None:
        version = await self.queue.data_version()
        while not self.stopping:
            try:
                await self._fill()
            except QueueBusy as exc:  # another process holds the queue; claim again on the next round
                log.warning("cannot claim: %s", exc)
            if self.until_idle and not self.busy and not await self._can_progress():
                return
            deadline = time.monotonic() + 1.0  # also re-check backoffs, cooling and aging now and then
            while not self.wake.is_set() and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), WATCH_S)
                if (latest := await self.queue.data_version()) != version:
                    version = latest
                    for task_id, status in (await self.queue.statuses(self.busy)).items():
                        self._interrupt(self.busy[task_id], "cancelled" if status == "cancelled" else None)
                    break
            self.wake.clear()

    async def _can_progress(self) -> bool:
        if all(s.agent.name in self.distributor.unavailable for s in self.distributor.slots):
            log.error("no agent can run: every configured agent is unavailable")
            self.failures += 1
            return False
        return await self.queue.runnable() > 0

    async def _fill(self) -> None:
        nothing_for: set[str] = set()  # agents that found no task they may run, this round
        while not self.stopping:
            free = (s for s in self.distributor.free(self.now()) if s.agent.name not in nothing_for)
            if (slot := next(free, None)) is None:
                return
            known, logs = self.distributor.known(), self._relative(self.cfg.runtime_dir / "logs")
            if (task := await self.queue.claim(slot.id, slot.takes, known, self.now(), logs)) is None:
                nothing_for.add(slot.agent.name)
                continue
            slot.task, slot.since, slot.stop = task, self.now(), asyncio.get_running_loop().create_future()
            slot.work = asyncio.ensure_future(self._work(slot))

    def _interrupt(self, slot: Slot, why: str | None) -> None:
        if why and slot.stop and not slot.stop.done():
            slot.stop.set_result(why)

    async def _work(self, slot: Slot) -> None:
        assert slot.task
        task = slot.task
        try:
            await self._attempt(task, slot)
        except Exception:
            log.exception("%s: unexpected error; the task goes back to pending", task.name)
            with contextlib.suppress(Exception):
                await self._requeue(task, None)
        finally:
            slot.task = slot.pid = slot.rss_mb = slot.stop = slot.work = None
            self.wake.set()

    async def _attempt(self, task: Task, slot: Slot) -> None:
        agent, adapter, stop = slot.agent, agents.adapter(slot.agent.type), slot.stop
        assert stop is not None
        # A task that finished a moment ago is in the prompt even before current_state.md is rewritten.
        text, notes = context.prompt(
            task, self.cfg, await self._block() if self.unpublished.is_set() else None
        )
        on_stdin = agents.prompt_on_stdin(agent.type, agent.command, text)
        timeout = task.timeout_seconds or agent.timeout_seconds or self.cfg.task_queue.timeout_minutes * 60
        env = {**os.environ, **agent.env, process.QUEUE_VAR: str(self.db), process.TASK_VAR: task.name}
        log_path = self.cfg.root / str(task.log_file)  # set by the claim
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab", buffering=0) as out:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            out.write(f"=== orchestrate: attempt {task.attempts + 1} on {slot.id} at {stamp} ===\n".encode())
            out.write("".join(f"=== orchestrate: {note} ===\n" for note in notes).encode())
            before = await workspace.snapshot(self.cfg, task.name) if self.git else None
            reader = adapter.Reader()
            try:
                code, why = await process.run(
                    adapter.argv(agent.command, None if on_stdin else text),
                    cwd=str(self.cfg.root),
                    env=env,
                    stdin=text.encode() if on_stdin else None,
                    log=out,
                    reader=reader,
                    timeout=timeout,
                    grace=self.cfg.task_queue.kill_grace_seconds,
                    stop=stop,
                    started=lambda pid: setattr(slot, "pid", pid),
                )
            except AgentUnavailable as exc:
                self._unavailable(agent.name, str(exc))
                return await self._requeue(task, str(exc))
        if why or agent.type in DETACHING:
            self._sweep(task.name)  # at once; other strays are found by the next heartbeat
        changed = await workspace.changes(self.cfg, before, await workspace.snapshot(self.cfg, task.name))
        await self._settle(task, slot, reader.finish(code), why, timeout, changed)

    async def _settle(
        self,
        task: Task,
        slot: Slot,
        result: Result,
        why: str | None,
        timeout: float,
        changed: list[str] | None,
    ) -> None:
        now = self.now()
        slot.cost_usd += result.cost_usd or 0
        if why in ("cancelled", "stopped"):
            log.info("%s: %s; its agent was stopped", task.name, why)
            return await self._requeue(task, None) if why == "stopped" else None
        if result.limited_until is not None and why is None:
            reset = max(result.limited_until, now + 1) if result.limited_until else now + COOLING_S
            until = self.distributor.cooling[slot.agent.name] = reset
            log.warning(
                "%s: %s hit a rate limit; cooling until %s", task.name, slot.agent.name, time.ctime(until)
            )
            return await self._requeue(task, result.error)
        limit = self.cfg.performance.max_memory_mb
        error = {
            "timeout": f"timed out after {timeout:g} s",
            "memory": f"used {slot.rss_mb or 0:.0f} MB, over performance.max_memory_mb ({limit})",
        }.get(why or "", result.error)
        attempts = task.attempts + 1
        status = (
            "completed" if result.ok and not why else "pending" if attempts <= task.max_retries else "failed"
        )
        slot.tasks_done += 1
        self.failures += status == "failed"
        done = task._replace(
            status=status, agent=slot.id, attempts=attempts, error=error, finished_at=now,
            cost_usd=result.cost_usd, input_tokens=result.input_tokens, output_tokens=result.output_tokens,
        )  # fmt: skip
        # The output file comes first: a task that depends on this one may be claimed at once.
        output = None if status == "pending" else self._write_output(done, result.message, changed)
        log.info("%s: %s on %s%s", task.name, status, slot.id, f": {error}" if error else "")
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
            not_before=now + self.cfg.task_queue.retry_delay_seconds * 2 ** (attempts - 1),
            finished_at=None if status == "pending" else now,
        )
        if status != "pending" and self.cfg.context.update_on_completion:
            self.completed.pop(task.id, None)  # a task retried by hand moves to the end
            self.completed[task.id] = context.completed_entry(done, output)
            self.unpublished.set()

    def _write_output(self, task: Task, message: str, changed: list[str] | None) -> str | None:
        try:
            return self._relative(context.write_output(self.cfg, task, message, changed))
        except OSError as exc:
            log.error("%s: cannot write its output file: %s", task.name, exc)
            return None

    def _relative(self, path: Path) -> str:
        return str(path.relative_to(self.cfg.root)) if path.is_relative_to(self.cfg.root) else str(path)

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

    def _sweep(self, finished: str = "") -> None:
        """Sample the agents' memory; kill processes no running task owns (or that `finished` left)."""
        owners = {s.task.name: s for s in self.busy.values() if s.task and s.task.name != finished}
        for name, procs in process.strays(str(self.db)).items():
            if (slot := owners.get(name)) is None:
                log.info("killing %d process(es) left behind by %s", len(procs), name or "an agent")
                process.kill([pid for pid, _ in procs])
                continue
            slot.rss_mb = sum(kib for _, kib in procs) / 1024
            if (limit := self.cfg.performance.max_memory_mb) and slot.rss_mb > limit:
                self._interrupt(slot, "memory")

    async def _publish(self) -> None:
        """Keep completed_tasks.json and current_state.md current, rewriting them at most every PUBLISH_S.

        Each rewrite costs the same however many tasks finished since the last one, so a burst of
        completions costs one rewrite, not one each.
        """
        while True:
            await self.unpublished.wait()
            await self._publish_now()
            await asyncio.sleep(PUBLISH_S)

    async def _publish_now(self) -> None:
        if not self.unpublished.is_set():
            return
        self.unpublished.clear()
        try:
            context.write_completed(self.cfg, self.completed.values())
            context.write_state(self.cfg, await self._block())
        except (OSError, QueueBusy) as exc:
            log.error("cannot update %s: %s", self.cfg.context.directory, exc)

    async def _block(self) -> str:
        recent, counts = await self.queue.recent(RECENT)
        return context.state_block([context.Line(*r) for r in recent], counts)

    async def _heartbeat(self) -> None:
        while True:
            try:
                self._sweep()
                running = [(s.task.id, s.pid) for s in self.distributor.slots if s.task]
                await self.queue.heartbeat(self.now(), running, self._slots())
            except Exception:  # a busy queue or a full disk: say so, and beat again
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


def serve(cfg: Config, *, until_idle: bool = False) -> int:
    """Run a head node in this process until it stops; its exit status."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if sys.version_info < (3, 12) and hasattr(os, "pidfd_open"):
        # 3.12 does this itself; the default before it starts a thread per agent to wait for it
        asyncio.set_child_watcher(asyncio.PidfdChildWatcher())
    return asyncio.run(Head(cfg, until_idle=until_idle).run())
