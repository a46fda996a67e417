"""The built-in agent adapters by type, as pre-commit's languages table: `command` is the core's own."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping
from importlib import import_module
from typing import Any

from orchestrate.core.agent import Result, reset_time
from orchestrate.core.config import AgentConfig

PROMPT_ARG_MAX = 100_000  # bytes; an argv element is capped near 128 KiB on Linux, so larger go on stdin
ANSWER_TAIL = 300  # characters of an answer an error quotes: its end, where a summary says how it went
OTHER_TAIL = 500  # characters of the CLI's other output (stderr, lines that are not JSON) an error quotes


def adapters(types: set[str]) -> Mapping[str, Any]:
    """The adapter modules for `types`: imported only for the agents a configuration uses."""
    found = {t: import_module(f"orchestrate.agents.{t}") for t in types if t != "command"}
    return found | {"command": import_module("orchestrate.core.command")}


def too_large_for_argv(prompt: str) -> bool:
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
        text = error or f"exited {exit_code} without a result" + self.printed(": ")
        until = reset_time(text) if limited else None
        return Result(False, "", text, session_id=self.session_id, limited_until=until, **usage)

    def printed(self, before: str) -> str:
        """The end of what the CLI printed besides its JSON events (stderr among it), after `before`; "" if nothing."""
        return before + " | ".join(self.tail)[-OTHER_TAIL:] if self.tail else ""

    def reported_success(self, exit_code: int, answer: str) -> str:
        """The error of a run whose structured output said success but whose exit status says it failed:
        both, so that it never reads as a success, with the end of its answer and of its other output."""
        said = answer.strip()
        if not said:
            return f"exited {exit_code} after reporting success, with an empty answer" + self.printed(" | ")
        quoted = said if len(said) <= ANSWER_TAIL else "…" + said[-ANSWER_TAIL:]
        return f"exited {exit_code} after reporting success: {quoted}" + self.printed(" | its other output: ")
