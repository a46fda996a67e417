"""The head node: one asyncio process that claims tasks and runs each through an agent CLI."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from orchestrate import agents, context, process, workspace
from orchestrate.agents import Result
from orchestrate.config import AgentConfig, Config
from orchestrate.distributor import Distributor, Slot
from orchestrate.errors import AgentUnavailable, OrchestrateError, QueueBusy
from orchestrate.queue import Queue
from orchestrate.store import Task, task_branch

log = logging.getLogger(__name__)
HEARTBEAT_S = 1.0  # heartbeat, lease renewal, memory sampling and the sweep for strays
WATCH_S = 0.05  # how often the head looks for another process's commit (add, cancel)
COOLING_S = 60.0  # a rate limit that names no reset time cools its agent this long
DETACHING = ("claude", "gemini")  # CLIs known to leave tool processes running in their own session


class Head:
    def __init__(self, cfg: Config, *, until_idle: bool = False) -> None:
        self.cfg, self.until_idle, self.now = cfg, until_idle, time.time
        self.db = cfg.task_queue.database.resolve()
        self.logs = self._relative(cfg.runtime_dir / "logs")  # as the task rows name the agents' logs
        self.distributor = Distributor(cfg.agents)
        self.wake = asyncio.Event()
        self.stopping: str | None = None  # "now" or "drain"
        self.failures = 0
        self.repo: workspace.Repository | None = None  # where changes are read from, in a git project
        self.journal = context.Journal(cfg, self._block, self._once)
        self.problems: set[str] = set()  # logged once each
        self.merging = asyncio.Lock()

    @property
    def busy(self) -> dict[int, Slot]:
        return {s.task.id: s for s in self.distributor.slots if s.task}

    async def run(self) -> int:
        """Work the queue until stopped (or, with until_idle, until nothing is left): the exit status."""
        lock, pid_file = _lock(self.db), self.cfg.runtime_dir / "head.pid"
        self.cfg.runtime_dir.mkdir(parents=True, exist_ok=True)
        (self.cfg.runtime_dir / ".gitignore").write_text("*\n")  # runtime files, worktrees: none is the project's
        self.queue = await Queue.open(self.db)
        web = None  # the dashboard's server, when the config gives it a port
        try:
            if port := self.cfg.dashboard.port:  # imported only then; it reads the queue on connections of its own
                from orchestrate import dashboard

                web = dashboard.start(self.cfg, port)
            self._sweep()  # a dead head's agents die before their tasks are handed out again
            for name, why in self.distributor.missing().items():
                self._unavailable(name, why)
            log_file = str(self.cfg.runtime_dir / "head.log")
            if recovered := await self.queue.register(
                os.getpid(), log_file, self.distributor.rows(self.now()), self.now()
            ):
                log.info("%d task(s) left running by a head that died are pending again", recovered)
            pid_file.write_text(f"{os.getpid()}\n")
            log.info("head %d on %s: %s", os.getpid(), self.db, ", ".join(s.id for s in self.distributor.slots))
            for sig, how in ((signal.SIGTERM, "now"), (signal.SIGINT, "now"), (signal.SIGUSR1, "drain")):
                asyncio.get_running_loop().add_signal_handler(sig, self.stop, how)
            self.repo = await workspace.repository(self.cfg)
            if self.cfg.context.update_on_completion:  # rebuilt from the queue: a head killed mid-way left it stale
                self.journal.load(await self.queue.finished())
            helpers = [asyncio.ensure_future(self._heartbeat()), asyncio.ensure_future(self.journal.keep())]
            try:
                await self._loop()
            finally:
                await asyncio.gather(*(s.work for s in self.busy.values() if s.work), return_exceptions=True)
                for helper in helpers:
                    helper.cancel()
                await asyncio.gather(*helpers, return_exceptions=True)
                await self.journal.publish()
                self._sweep()
                await self.queue.unregister()
                log.info("head %d stopped", os.getpid())
            return 1 if self.failures or (self.until_idle and await self.queue.pending()) else 0
        finally:
            if web:
                web.stop()
            pid_file.unlink(missing_ok=True)
            await self.queue.close()
            os.close(lock)

    def stop(self, how: str) -> None:
        """Stop claiming; "now" interrupts running agents (their tasks go back to pending), "drain" waits."""
        log.info("stopping (%s) with %d task(s) running", how, len(self.busy))
        self.stopping = "now" if "now" in (how, self.stopping) else how
        for slot in self.busy.values():
            slot.interrupt("stopped" if how == "now" else None)
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
                        # looked up again: a task may have ended while the statuses were read
                        if status == "cancelled" and (slot := self.busy.get(task_id)):
                            slot.interrupt("cancelled")
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
            if (
                task := await self.queue.claim(slot.id, slot.takes, self.distributor.known(), self.now(), self.logs)
            ) is None:
                nothing_for.add(slot.agent.name)
                continue
            slot.task, slot.since, slot.stop = task, self.now(), asyncio.get_running_loop().create_future()
            slot.work = asyncio.ensure_future(self._work(slot, task))

    async def _work(self, slot: Slot, task: Task) -> None:
        try:
            await self._attempt(slot, task)
        except Exception as exc:  # a bug, or the machine: a failed attempt, so it cannot loop hot
            log.exception("%s: orchestrate could not run it", task.name)
            with contextlib.suppress(Exception):
                failure = Result(False, "", f"orchestrate could not run it: {exc!r}; see the head's log")
                await self._settle(slot, task, failure, None, 0, None)
        finally:
            slot.task = slot.pid = slot.rss_mb = slot.stop = slot.work = None
            self.wake.set()

    async def _attempt(self, slot: Slot, task: Task) -> None:
        agent, adapter, cfg = slot.agent, agents.adapter(slot.agent.type), self.cfg
        assert slot.stop is not None
        tree = workspace.worktree(cfg, task)
        cwd = tree / self.repo.prefix if tree and self.repo else cfg.root
        # A task that finished a moment ago is in the prompt even before current_state.md is rewritten.
        text, notes = context.prompt(task, cfg, await self.journal.fresh_block(), cwd)
        on_stdin = agents.prompt_on_stdin(agent.type, agent.command, text)
        timeout = task.timeout_seconds or agent.timeout_seconds or cfg.task_queue.timeout_minutes * 60
        env = {**os.environ, **agent.env, process.QUEUE_VAR: str(self.db), process.TASK_VAR: task.name}
        run = functools.partial(
            process.run, cwd=str(cwd), env=env, grace=cfg.task_queue.kill_grace_seconds, stop=slot.stop,
            started=lambda pid: setattr(slot, "pid", pid),
        )  # fmt: skip
        with process.Log(cfg.root / str(task.log_file), self._once) as out:  # the claim set log_file
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            out.write(f"=== orchestrate: attempt {task.attempts + 1} on {slot.id} at {stamp} ===\n".encode())
            out.write("".join(f"=== orchestrate: {note} ===\n" for note in notes).encode())
            why, failed = await self._prepare(task, tree, run, out) if tree else (None, None)
            if why or failed:
                return await self._settle(slot, task, Result(False, "", failed), why, timeout, None)
            before = await workspace.snapshot(cfg, self.repo, task.name) if not tree else None
            reader, argv = adapter.Reader(), adapter.argv(agent.command, None if on_stdin else text)
            try:
                code, why = await run(argv, stdin=text.encode() if on_stdin else None, log=out, reader=reader,
                                      timeout=timeout)  # fmt: skip
            except AgentUnavailable as exc:
                self._unavailable(agent.name, str(exc))
                return await self._requeue(task, str(exc))
            if why or agent.type in DETACHING:
                self._sweep(task.name)  # at once; other strays are found by the next heartbeat
            result, checks = reader.finish(code), list[str]()
            if tree and self.repo:
                await workspace.commit(cfg, self.repo, task, tree)
                changed = await workspace.changes(cfg, self.repo, f"HEAD...{task_branch(task.id)}")
            else:
                after = await workspace.snapshot(cfg, self.repo, task.name) if before else None
                changed = await workspace.changes(cfg, self.repo, before, after)
            if result.ok and not why:
                result, why, checks = await self._judge(task, agent, result, changed, run, out)
        await self._settle(slot, task, result, why, timeout, changed, checks)

    async def _prepare(self, task: Task, tree: Path, run: Any, out: process.Log) -> tuple[str | None, str | None]:
        """Check out and set up the task's worktree: (why it was stopped, what failed), each None if not."""
        if self.repo is None:
            return None, "not a git repository, so it has no worktree"
        if failed := await workspace.prepare(self.cfg, self.repo, task, tree):
            return None, failed
        setup = self.cfg.workspace.setup
        return await self._shell("setup", setup, run, out) if setup else (None, None)

    async def _judge(
        self, task: Task, agent: AgentConfig, result: Result, changed: list[str] | None, run: Any, out: process.Log
    ) -> tuple[Result, str | None, list[str]]:
        """The agent's word is not taken for it: require_changes, then the task's checks in turn.
        The result as judged, why a check was stopped, and each check's outcome."""
        if self.cfg.workspace.require_changes and not changed:
            unseen = " (not a git repository: none can be seen)" if changed is None else ""
            return result._replace(ok=False, error="no changes made" + unseen), None, []
        checks: list[str] = []
        for command in next(c for c in (task.verify, agent.verify, self.cfg.workspace.verify) if c is not None):
            why, failed = await self._shell("verify", command, run, out)
            checks.append(f"`{command}`: {why or ('FAILED' if failed else 'passed')}")
            if why or failed:
                return result._replace(ok=False, error=failed) if failed else result, why, checks
        return result, None, checks

    async def _shell(self, step: str, command: str, run: Any, out: process.Log) -> tuple[str | None, str | None]:
        """Run a setup or verify command to its end: (why it was stopped, what failed), each None if not."""
        out.write(f"=== orchestrate: {step}: {command} ===\n".encode())
        tail, limit = agents.JsonLines(), self.cfg.workspace.verify_timeout_seconds
        code, why = await run(["/bin/sh", "-c", command], stdin=None, log=out, reader=tail, timeout=limit)
        if why in ("cancelled", "stopped") or (code == 0 and not why):
            return why, None
        how = f"timed out after {limit:g} s" if why == "timeout" else f"stopped: {why}" if why else f"exit {code}"
        return None, f"{step} `{command}` failed ({how}):\n" + "\n".join(tail.tail)

    async def _settle(
        self, slot: Slot, task: Task, result: Result, why: str | None, timeout: float, changed: list[str] | None,
        checks: list[str] | None = None,
    ) -> None:  # fmt: skip
        now, tree = self.now(), workspace.worktree(self.cfg, task)
        slot.cost_usd += result.cost_usd or 0
        if why in ("cancelled", "stopped"):
            log.info("%s: %s; its agent was stopped", task.name, why)
            if why == "cancelled" and tree:
                await self._tidy(task)
            return await self._requeue(task, None) if why == "stopped" else None
        if result.limited_until is not None and why is None:
            reset = max(result.limited_until, now + 1) if result.limited_until else now + COOLING_S
            until = self.distributor.cooling[slot.agent.name] = reset
            log.warning("%s: %s hit a rate limit; cooling until %s", task.name, slot.agent.name, time.ctime(until))
            return await self._requeue(task, result.error)
        error = {
            "timeout": f"timed out after {timeout:g} s",
            "memory": f"used {slot.rss_mb or 0:.0f} MB, over performance.max_memory_mb ({self.cfg.performance.max_memory_mb})",
        }.get(why or "", result.error)
        attempts = task.attempts + 1
        status = "completed" if result.ok and not why else "pending" if attempts <= task.max_retries else "failed"
        merged = False
        if status == "completed" and tree and self.repo and self.cfg.workspace.merge == "auto":
            async with self.merging:  # one at a time: each merge starts from the one before
                error = await workspace.merge(self.cfg, self.repo, task)
            status, merged = ("failed", False) if error else (status, True)  # a conflict needs a person
        slot.tasks_done += 1
        self.failures += status == "failed"
        log.info("%s: %s on %s%s", task.name, status, slot.id, f": {error}" if error else "")
        ended: dict[str, Any] = dict(
            status=status, attempts=attempts, error=error, cost_usd=result.cost_usd,
            input_tokens=result.input_tokens, output_tokens=result.output_tokens,
            finished_at=None if status == "pending" else now,
        )  # fmt: skip
        done = task._replace(agent=slot.id, **ended)
        if status != "pending":  # the output file first: a task that builds on this one may start at once
            done = done._replace(output_file=self._write_output(done, result.message, changed, checks or []))
        backoff = self.cfg.task_queue.retry_delay_seconds * 2 ** (attempts - 1)
        await self._record(
            task.id, **ended, result=result.message, session_id=result.session_id,
            output_file=done.output_file, pid=None, not_before=now + backoff,
        )  # fmt: skip
        if status != "pending" and self.cfg.context.update_on_completion:
            self.journal.add(done)
        if merged:
            await self._tidy(task)

    async def _tidy(self, task: Task) -> None:
        """Remove the worktree of a task that was merged or cancelled; its branch stays."""
        if problem := await workspace.remove(self.cfg, task):
            log.warning("%s: kept its worktree: %s", task.name, problem)

    def _write_output(self, task: Task, message: str, changed: list[str] | None, checks: list[str]) -> str | None:
        try:
            return self._relative(context.write_output(self.cfg, task, message, changed, checks))
        except OSError as exc:
            self._once(f"cannot write output files in {self.cfg.context.directory} ({exc.strerror})")
            return None

    def _once(self, problem: str) -> None:
        """Log `problem` the first time it happens: a full disk would otherwise fill the log too."""
        if problem not in self.problems:
            self.problems.add(problem)
            log.error("%s", problem)

    def _relative(self, path: Path) -> str:
        return str(path.relative_to(self.cfg.root)) if path.is_relative_to(self.cfg.root) else str(path)

    async def _requeue(self, task: Task, error: str | None) -> None:
        """Back to pending without spending an attempt: the run was not the task's fault."""
        fields = {"error": error} if error else {}
        await self._record(task.id, status="pending", agent=None, pid=None, started_at=None, **fields)

    async def _record(self, task_id: int, **fields: Any) -> None:
        """Write what became of a run, however long another process holds the queue: a result
        that was dropped would leave the task running, to be run again by the next head."""
        while True:
            try:
                await self.queue.update(task_id, **fields)
                return
            except QueueBusy as exc:  # each try waits out the busy timeout: this never spins
                self._once(f"cannot record results: {exc}; still trying")

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
                slot.interrupt("memory")

    async def _block(self) -> str:
        recent, counts = await self.queue.recent(context.RECENT)
        return context.state_block([context.Line(*r) for r in recent], counts)

    async def _heartbeat(self) -> None:
        while True:
            try:
                self._sweep()
                running = [(s.task.id, s.pid) for s in self.distributor.slots if s.task]
                await self.queue.heartbeat(self.now(), running, self.distributor.rows(self.now()))
            except QueueBusy as exc:
                log.warning("heartbeat: %s", exc)
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


def serve(cfg: Config, *, until_idle: bool = False) -> int:
    """Run a head node in this process until it stops; its exit status."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if sys.version_info < (3, 12) and hasattr(os, "pidfd_open"):
        # 3.12 does this itself; the default before it starts a thread per agent to wait for it
        asyncio.set_child_watcher(asyncio.PidfdChildWatcher())
    return asyncio.run(Head(cfg, until_idle=until_idle).run())
