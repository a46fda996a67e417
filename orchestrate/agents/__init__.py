"""The agent contract: how to call a CLI headless, and how to read what it printed."""

from __future__ import annotations

import json
import re
import time
from collections import deque
from collections.abc import Callable
from importlib import import_module
from typing import Any, NamedTuple, Protocol

PROMPT_ARG_MAX = 100_000  # bytes; an argv element is capped near 128 KiB on Linux, so larger go on stdin
LIMIT_PATTERN = re.compile(r"\b429\b|rate.?limit|usage limit|quota|too many requests", re.I)


class Result(NamedTuple):
    """What one run of an agent produced, read from the CLI's own structured output."""

    ok: bool
    message: str  # the final answer, verbatim
    error: str | None = None
    cost_usd: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    session_id: str | None = None
    limited_until: float | None = None  # set when the CLI hit a rate or usage limit


class Output(Protocol):
    """Reads a run's output line by line as it streams, then judges it."""

    def feed(self, line: str, stderr: bool) -> None: ...
    def finish(self, exit_code: int) -> Result: ...


class Adapter(Protocol):
    """An agent type: one module each (claude, codex, gemini, command)."""

    Reader: Callable[[], Output]

    def argv(self, command: tuple[str, ...], prompt: str | None) -> list[str]:
        """The full argv; `prompt` is None when it travels on stdin instead."""
        ...


def prompt_on_stdin(kind: str, command: tuple[str, ...], prompt: str) -> bool:
    """A command agent takes its prompt on stdin unless it asks for `{prompt}`; CLIs when it is large."""
    if kind == "command":
        return not any("{prompt}" in part for part in command)
    return len(prompt.encode()) > PROMPT_ARG_MAX


def adapter(kind: str) -> Adapter:
    """The adapter module for an agent type: claude, codex, gemini or command."""
    module: Any = import_module(f"orchestrate.agents.{kind}")
    return module  # type: ignore[no-any-return]


class JsonLines:
    """Shared parsing: JSON events on stdout go to `event`; other lines are kept as a tail."""

    def __init__(self) -> None:
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

    def failure(self, exit_code: int, error: str | None, **usage: Any) -> Result:
        """A failed run; an error that names a rate or usage limit marks the agent as cooling."""
        text = error or f"exited {exit_code} without a result: " + " | ".join(self.tail)[-500:]
        return Result(False, "", text, session_id=self.session_id, limited_until=limit_reset(text), **usage)


def limit_reset(text: str, now: float | None = None) -> float | None:
    """When a rate-limit message says the limit resets (0.0 if it names no time); None if no limit."""
    if not LIMIT_PATTERN.search(text):
        return None
    now = time.time() if now is None else now
    if stamp := re.search(r"\|(\d{10})\b", text):  # Claude: "usage limit reached|<unix time>"
        return float(stamp.group(1))
    if after := re.search(r"(?:in|after) (\d+(?:\.\d+)?) ?(s|sec|seconds?|m|min|minutes?|h|hours?)\b", text):
        unit = {"s": 1, "m": 60, "h": 3600}[after.group(2)[0]]
        return now + float(after.group(1)) * unit
    return 0.0
