"""Agent processes: spawned in their own session, streamed to a log, stopped with their whole tree."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from orchestrate.core.agent import Output
from orchestrate.core.errors import AgentUnavailable, OrchestrateError
from orchestrate.core.states import Stop

if TYPE_CHECKING:
    from orchestrate.core.attempt import Attempt

# Every agent and everything it starts inherit these variables: descendants that start a session
# of their own escape the process group, not their environment. Those that also clear it are
# adopted by the head once their parent dies (orchestrate/orphans.py): the two together find them all.
QUEUE_VAR, TASK_VAR = "ORCHESTRATE_QUEUE", "ORCHESTRATE_TASK"
TASK_KEY = f"{TASK_VAR}=".encode()
LINE_MAX = 16_000_000  # a longer line is logged in full but not parsed
PIPE = asyncio.subprocess.PIPE
DRAIN_S = 2.0  # after exit, how long a pipe held open by a stray may delay the end of a run


class Log:
    """A task's log, written while the disk allows: a full disk must not stop the work, so a write
    that fails is reported once (to `trouble`) and the rest of the output goes unlogged."""

    def __init__(self, path: Path, trouble: Callable[[str], None]) -> None:
        self.path, self.trouble = path, trouble
        self.file: BinaryIO | None = None
        self.written = time.monotonic()  # when anything was last written: how silence is seen
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(path, "ab", buffering=0)  # noqa: SIM115 (closed by close)
        except OSError as exc:
            self._failed(exc)

    def write(self, data: bytes) -> None:
        try:
            self.written = time.monotonic()
            if self.file:
                self.file.write(data)
        except OSError as exc:
            self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        self.trouble(f"cannot write agents' logs in {self.path.parent} ({exc.strerror}); running them unlogged")
        self.close()

    def close(self) -> None:
        if self.file:
            with contextlib.suppress(OSError):
                self.file.close()
        self.file = None


async def run(
    argv: list[str], stdin: str | None, reader: Output, timeout: float, attempt: Attempt
) -> tuple[int, Stop | None]:
    """Run a process as `attempt`'s agent runs: in its cwd, with its environment, logged, stopped
    with it (`slot.stop`); (exit code, why it was stopped: timeout or the stop's reason, or None)."""
    cwd, stop, loop = str(attempt.cwd), attempt.slot.stop, asyncio.get_running_loop()
    assert stop is not None
    feed = PIPE if stdin is not None else asyncio.subprocess.DEVNULL
    # a session of its own: its whole process group can be signalled
    spawn: dict[str, Any] = dict(cwd=cwd, env=attempt.env, stdin=feed, stdout=PIPE, stderr=PIPE, start_new_session=True)
    try:
        transport, agent = await loop.subprocess_exec(lambda: _Agent(attempt.log, reader, loop), *argv, **spawn)
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        if exc.filename == cwd:  # the child could not enter it: the program may be fine
            raise OrchestrateError(f"cannot run the agent in {cwd}: {exc.strerror}") from None
        raise AgentUnavailable(f"cannot run {argv[0]!r}: {exc.strerror}") from None
    attempt.slot.pid = pid = transport.get_pid()  # also its process group: it leads a session of its own
    if stdin is not None:  # a program may exit without reading its prompt: that is its business
        pipe = cast(asyncio.WriteTransport, transport.get_pipe_transport(0))
        pipe.write(stdin.encode())
        pipe.close()
    either: set[asyncio.Future[Any]] = {agent.exited, stop}
    done, _ = await asyncio.wait(either, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    reason = None
    if agent.exited not in done:
        reason = stop.result() if stop.done() else Stop.TIMEOUT
        send_signal(pid, signal.SIGTERM)  # to the group: the CLIs stop their own children on it
        # a cancelled task must be gone within a second; others get the configured grace
        grace = attempt.cfg.task_queue.kill_grace_seconds
        await asyncio.wait({agent.exited}, timeout=min(grace, 0.5) if reason is Stop.CANCELLED else grace)
    send_signal(pid, signal.SIGKILL)  # past the grace, or whatever it left behind in its group
    await asyncio.wait({agent.closed}, timeout=DRAIN_S)  # a stray outside the group may hold a pipe
    transport.close()
    await agent.closed
    return transport.get_returncode() or 0, reason  # never None: the protocol closes only after the exit


class _Agent(asyncio.SubprocessProtocol):
    """Streams a process's output, a line at a time, to its log and its reader.

    The exit is heard from the process, not from its pipes: a child that inherited them must not
    keep the run going (on Python 3.11, `Process.wait` also waits for the pipes to close)."""

    def __init__(self, log: Log, reader: Output, loop: asyncio.AbstractEventLoop) -> None:
        self.log, self.reader = log, reader
        self.partial = {1: b"", 2: b""}
        self.skipping = {1: False, 2: False}  # inside a line too long to parse, until its newline
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.log.write(data)
        lines = (self.partial[fd] + data).split(b"\n")
        self.partial[fd] = lines.pop()
        if self.skipping[fd] and lines:
            lines, self.skipping[fd] = lines[1:], False  # the end of the long line
        for line in lines:
            self.reader.feed(line.decode(errors="replace"), fd == 2)
        if len(self.partial[fd]) > LINE_MAX:
            self.partial[fd], self.skipping[fd] = b"", True

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if self.partial.get(fd) and not self.skipping[fd]:
            self.reader.feed(self.partial[fd].decode(errors="replace"), fd == 2)

    def process_exited(self) -> None:
        self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set_result(None)


def send_signal(pid: int, sig: int, group: bool = True) -> None:
    """Signal the process group `pid` leads (or, without `group`, the process alone) while it is there."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        (os.killpg if group else os.kill)(pid, sig)


def strays(queue: str) -> dict[str, list[tuple[int, int]]]:
    """Live processes started for `queue`, by the task their environment names: [(pid, resident KiB)]."""
    tasks: dict[str, list[tuple[int, int]]] = {}
    me, needle, page_kib = os.getpid(), f"{QUEUE_VAR}={queue}\0".encode(), os.sysconf("SC_PAGE_SIZE") // 1024
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or (pid := int(entry.name)) == me:
            continue
        try:
            if needle not in (environ := Path(f"/proc/{pid}/environ").read_bytes()):
                continue
            stat = Path(f"/proc/{pid}/stat").read_bytes()
            rss = int(stat[stat.rindex(b")") + 2 :].split()[21])  # after the command's name, which may hold anything
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
        task = next((v.split(b"=", 1)[1].decode() for v in environ.split(b"\0") if v.startswith(TASK_KEY)), "")
        tasks.setdefault(task, []).append((pid, rss * page_kib))
    return tasks
