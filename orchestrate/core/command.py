"""Any program: the prompt on stdin, or in place of `{prompt}` in the command; stdout is the result.

A command says nothing structured about rate limits, so a limit is only what its entry declares:
`rate_limit_exit_code`, or `rate_limit_pattern` matched against what it printed on stderr."""

from __future__ import annotations

import re
from collections import deque

from orchestrate.core.agent import Argv, Result, reset_time
from orchestrate.core.config import AgentConfig

RESULT_MAX = 256_000  # characters of stdout kept as the result; the log keeps everything
detaches = resumes = False


def argv(command: tuple[str, ...], prompt: str, session: str | None, budget: float | None) -> Argv:
    if any("{prompt}" in part for part in command):  # an argv cannot carry a NUL: it travels as U+FFFD
        return [part.replace("{prompt}", prompt.replace("\0", "\ufffd")) for part in command], None
    return list(command), prompt


class Reader:
    def __init__(self, agent: AgentConfig) -> None:
        self.agent = agent
        self.out: deque[str] = deque()
        self.size = 0
        self.err: deque[str] = deque(maxlen=20)

    def feed(self, line: str, stderr: bool) -> None:
        if stderr:
            self.err.append(line.rstrip())
            return
        self.out.append(line + "\n")
        self.size += len(line) + 1
        while self.size > RESULT_MAX and len(self.out) > 1:
            self.size -= len(self.out.popleft())

    def finish(self, exit_code: int) -> Result:
        message = "".join(self.out).strip()
        if exit_code == 0:
            return Result(True, message)
        said = " | ".join(self.err) or message[-500:]
        pattern = self.agent.rate_limit_pattern
        if exit_code == self.agent.rate_limit_exit_code or (pattern and re.search(pattern, said)):
            return Result(False, message, f"exited {exit_code}: {said}", limited_until=reset_time(said))
        return Result(False, message, f"exited {exit_code}: {said}")
