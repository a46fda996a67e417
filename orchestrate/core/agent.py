"""The agent contract: how to call a CLI headless, and how to read what it printed."""

from __future__ import annotations

import json
import re
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from orchestrate.core.config import AgentConfig

PROMPT_ARG_MAX = 100_000  # bytes; an argv element is capped near 128 KiB on Linux, so larger go on stdin


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


def too_large_for_argv(command: tuple[str, ...], prompt: str) -> bool:
    """The CLIs' rule: the prompt in the argv unless it is large, or holds what argv cannot carry."""
    return len(prompt.encode()) > PROMPT_ARG_MAX or "\0" in prompt


class JsonLines:
    """Shared parsing: JSON events on stdout go to `event`; other lines are kept as a tail."""

    def __init__(self, agent: AgentConfig | None = None) -> None:
        self.tail: deque[str] = deque(maxlen=20)
        self.session_id: str | None = None

    def feed(self, line: str, stderr: bool) -> None:
        stripped = line.strip()
        if stripped.startswith("{"):
            try:
                event = json.loads(stripped)
            except ValueError:
                event = None
            if isinstance(event, dict):
                self.event(event, stderr)
                return
        if stripped:
            self.tail.append(stripped)

    def event(self, event: dict[str, Any], stderr: bool) -> None:
        """Handle one JSON object the CLI printed."""

    def failure(self, exit_code: int, error: str | None, limited: bool = False, **usage: Any) -> Result:
        """A failed run; `limited` when the CLI's structured output reported a rate or usage limit."""
        text = error or f"exited {exit_code} without a result: " + " | ".join(self.tail)[-500:]
        until = reset_time(text) if limited else None
        return Result(False, "", text, session_id=self.session_id, limited_until=until, **usage)


def reset_time(text: str, now: float | None = None) -> float:
    """When a rate-limit message says the limit resets; 0.0 if it names no time."""
    now = time.time() if now is None else now
    if stamp := re.search(r"\|(\d{10})\b", text):  # Claude: "usage limit reached|<unix time>"
        return float(stamp.group(1))
    if after := re.search(r"(?:in|after) (\d+(?:\.\d+)?) ?(s|sec|seconds?|m|min|minutes?|h|hours?)\b", text):
        unit = {"s": 1, "m": 60, "h": 3600}[after.group(2)[0]]
        return now + float(after.group(1)) * unit
    return 0.0
