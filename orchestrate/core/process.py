"""Agent processes: spawned in their own session, streamed to a log, stopped with their whole tree."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from orchestrate.core.agent import Output
from orchestrate.core.errors import AgentUnavailable, OrchestrateError
from orchestrate.core.states import Stop

# Every agent and everything it starts inherit these variables. Descendants that start their
# own session escape the process group, but not their environment: that is how strays are found.
QUEUE_VAR, TASK_VAR = "ORCHESTRATE_QUEUE", "ORCHESTRATE_TASK"
TASK_KEY = f"{TASK_VAR}=".encode()
LINE_MAX = 16_000_000  # a longer line is logged in full but not parsed
PIPE = asyncio.subprocess.PIPE
DRAIN_S = 5.0  # after exit, how long a pipe held open by a stray may delay the end of a run


class Log:
    """A task's log, written while the disk allows: a full disk must not stop the work, so a write
    that fails is reported once (to `trouble`) and the rest of the output goes unlogged."""

    def __init__(self, path: Path, trouble: Callable[[str], None]) -> None:
        self.path, self.trouble = path, trouble
        self.file: BinaryIO | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(path, "ab", buffering=0)  # noqa: SIM115 (closed by __exit__)
        except OSError as exc:
            self._failed(exc)

    def write(self, data: bytes) -> None:
        try:
            if self.file:
                self.file.write(data)
        except OSError as exc:
            self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        self.trouble(f"cannot write agents' logs in {self.path.parent} ({exc.strerror}); running them unlogged")
        self.__exit__()

    def __enter__(self) -> Log:
        return self

    def __exit__(self, *_: object) -> None:
        if self.file:
            with contextlib.suppress(OSError):
                self.file.close()
        self.file = None


class Context(NamedTuple):
    """Where and how an attempt's processes run."""

    cwd: str
    env: dict[str, str]
    log: Log
    grace: float  # between SIGTERM and SIGKILL
    stop: asyncio.Future[Stop]  # resolved with a reason to stop the process early
    started: Callable[[int], None]  # told each process's pid


async def run(
    argv: list[str], stdin: bytes | None, reader: Output, timeout: float, ctx: Context
) -> tuple[int, Stop | None]:
    """Run a process to its end: (exit code, why it was stopped: timeout or `stop`'s reason, or None)."""
    cwd, log, stop = ctx.cwd, ctx.log, ctx.stop
    feed = PIPE if stdin is not None else asyncio.subprocess.DEVNULL
    try:  # a session of its own: its whole process group can be signalled
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=ctx.env, stdin=feed, stdout=PIPE, stderr=PIPE, start_new_session=True
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        if exc.filename == cwd:  # the child could not enter it: the program may be fine
            raise OrchestrateError(f"cannot run the agent in {cwd}: {exc.strerror}") from None
        raise AgentUnavailable(f"cannot run {argv[0]!r}: {exc.strerror}") from None
    assert proc.stdout and proc.stderr
    ctx.started(proc.pid)  # also its process group: the agent leads a session of its own
    pumps = [asyncio.ensure_future(_pump(s, log, reader, s is proc.stderr)) for s in (proc.stdout, proc.stderr)]
    if stdin is not None and proc.stdin:
        pumps.append(asyncio.ensure_future(_feed(proc.stdin, stdin)))
    exited = asyncio.ensure_future(proc.wait())
    either: set[asyncio.Future[Any]] = {exited, stop}
    done, _ = await asyncio.wait(either, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    reason = None
    if exited not in done:
        reason = stop.result() if stop.done() else Stop.TIMEOUT
        # a cancelled task must be gone within a second; others get the configured grace
        await terminate(proc.pid, exited, min(ctx.grace, 0.5) if reason is Stop.CANCELLED else ctx.grace)
    send_signal(proc.pid, signal.SIGKILL)  # whatever it left behind in its group
    _, slow = await asyncio.wait(pumps, timeout=DRAIN_S)
    for pump in slow:
        pump.cancel()
    return await exited, reason


async def terminate(pgid: int, exited: asyncio.Future[int], grace: float) -> None:
    """SIGTERM the group (the CLIs stop their own children on it), then SIGKILL after `grace`."""
    send_signal(pgid, signal.SIGTERM)
    if not (await asyncio.wait({exited}, timeout=grace))[0]:
        send_signal(pgid, signal.SIGKILL)
        await exited


def send_signal(pid: int, sig: int, group: bool = True) -> None:
    """Signal the process group `pid` leads (or, without `group`, the process alone) while it is there."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        (os.killpg if group else os.kill)(pid, sig)


async def _pump(stream: asyncio.StreamReader, log: Log, reader: Output, stderr: bool) -> None:
    partial, skipping = b"", False  # skipping: inside a line too long to parse, until its newline
    while chunk := await stream.read(65536):
        log.write(chunk)
        lines = (partial + chunk).split(b"\n")
        partial = lines.pop()
        if skipping and lines:
            lines, skipping = lines[1:], False  # the end of the long line
        for line in lines:
            reader.feed(line.decode(errors="replace"), stderr)
        if len(partial) > LINE_MAX:
            partial, skipping = b"", True
    if partial and not skipping:
        reader.feed(partial.decode(errors="replace"), stderr)


async def _feed(pipe: asyncio.StreamWriter, data: bytes) -> None:
    # A program may exit without reading its prompt: that is its business, not an error.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        pipe.write(data)
        await pipe.drain()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        pipe.close()


def strays(queue: str) -> dict[str, list[tuple[int, int]]]:
    """Live processes started for `queue`, by task name: [(pid, resident KiB)]."""
    found: dict[str, list[tuple[int, int]]] = {}
    needle, page_kib = f"{QUEUE_VAR}={queue}\0".encode(), os.sysconf("SC_PAGE_SIZE") // 1024
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (environ := Path(f"/proc/{entry.name}/environ").read_bytes()):
                continue
            pages = int(Path(f"/proc/{entry.name}/statm").read_bytes().split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
        task = next((v.split(b"=", 1)[1].decode() for v in environ.split(b"\0") if v.startswith(TASK_KEY)), "")
        found.setdefault(task, []).append((int(entry.name), pages * page_kib))
    return found
