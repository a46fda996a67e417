"""The agent contract: how to call a CLI headless, and how to read what it printed."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import NamedTuple, Protocol

from orchestrate.core.config import AgentConfig


class Result(NamedTuple):
    """What one run of an agent produced, read from the CLI's own structured output."""

    ok: bool
    message: str  # the final answer, verbatim
    error: str | None = None
    cost_usd: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    session_id: str | None = None
    limited_until: float | None = None  # set when the CLI reported a rate or usage limit; 0: no reset time


class Output(Protocol):
    """Reads a run's output line by line as it streams, then judges it."""

    def feed(self, line: str, stderr: bool) -> None: ...
    def finish(self, exit_code: int) -> Result: ...


class Adapter(Protocol):
    """An agent type: one module each (claude, codex, gemini, and command here in the core)."""

    Reader: Callable[[AgentConfig], Output]
    detaches: bool  # its tools may leave processes in sessions of their own: sweep after each run

    def argv(self, command: tuple[str, ...], prompt: str | None) -> list[str]:
        """The full argv; `prompt` is None when it travels on stdin instead."""
        ...

    def prompt_on_stdin(self, command: tuple[str, ...], prompt: str) -> bool:
        """Whether the prompt goes on stdin rather than in the argv."""
        ...


def reset_time(text: str, now: float | None = None) -> float:
    """When a rate-limit message says the limit resets; 0.0 if it names no time."""
    now = time.time() if now is None else now
    if stamp := re.search(r"\|(\d{10})\b", text):  # Claude: "usage limit reached|<unix time>"
        return float(stamp.group(1))
    if after := re.search(r"(?:in|after) (\d+(?:\.\d+)?) ?(s|sec|seconds?|m|min|minutes?|h|hours?)\b", text):
        unit = {"s": 1, "m": 60, "h": 3600}[after.group(2)[0]]
        return now + float(after.group(1)) * unit
    return 0.0
