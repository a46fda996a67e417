"""Setup and verify commands: run through /bin/sh in the attempt's directory, as its agent is."""

from __future__ import annotations

from collections import deque

from orchestrate.core import process
from orchestrate.core.agent import Result
from orchestrate.core.attempt import Attempt
from orchestrate.core.states import Stop
from orchestrate.workspace import settings


class Tail:
    """The last lines a setup or verify command printed, for its error."""

    def __init__(self) -> None:
        self.lines: deque[str] = deque(maxlen=20)

    def feed(self, line: str, stderr: bool) -> None:
        if line.strip():
            self.lines.append(line.strip())

    def finish(self, exit_code: int) -> Result:
        return Result(exit_code == 0, "")


async def shell(attempt: Attempt, step: str, command: str) -> None:
    """Run a setup or verify command in the attempt's directory; a failure fails the attempt, a
    stop (cancel, head stopping) stops it."""
    attempt.log.write(f"=== orchestrate: {step}: {command} ===\n".encode())
    tail, limit = Tail(), settings(attempt.cfg).verify_timeout_seconds
    code, why = await process.run(["/bin/sh", "-c", command], None, tail, limit, attempt)
    if why in (Stop.CANCELLED, Stop.STOPPED):
        attempt.stopped = why
    elif code or why:
        how = f"timed out after {limit:g} s" if why is Stop.TIMEOUT else f"stopped: {why}" if why else f"exit {code}"
        attempt.fail(f"{step} `{command}` failed ({how}):\n" + "\n".join(tail.lines))
