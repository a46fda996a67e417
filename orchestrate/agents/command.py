"""Any program: the prompt on stdin, or in place of `{prompt}` in the command; stdout is the result."""

from __future__ import annotations

from collections import deque

from orchestrate.agents import Result, limit_reset

RESULT_MAX = 256_000  # characters of stdout kept as the result; the log keeps everything


def argv(command: tuple[str, ...], prompt: str | None) -> list[str]:
    if prompt is None:
        return list(command)
    return [part.replace("{prompt}", prompt) for part in command]


class Reader:
    def __init__(self) -> None:
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
        error = f"exited {exit_code}: " + (" | ".join(self.err) or message[-500:])
        return Result(False, message, error, limited_until=limit_reset(error))
