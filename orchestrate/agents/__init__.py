"""The built-in agent adapters by type, as pre-commit's languages table: `command` is the core's own."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping
from decimal import Decimal
from importlib import import_module
from typing import Any

from orchestrate.core.agent import Result
from orchestrate.core.config import AgentConfig

PROMPT_ARG_MAX = 100_000  # bytes; an argv element is capped near 128 KiB on Linux, so larger go on stdin
ANSWER_TAIL = 300  # characters of an answer an error quotes: its end, where a summary says how it went
OTHER_TAIL = 500  # characters of the CLI's other output (stderr, lines that are not JSON) an error quotes
ERRORS_KEPT = 5  # the CLI's last error events an error quotes, each cut to ANSWER_TAIL characters
AUTH_STATUSES = (401, 403)  # HTTP statuses that say the credentials were refused


def adapters(types: set[str]) -> Mapping[str, Any]:
    """The adapter modules for `types`: imported only for the agents a configuration uses."""
    found = {t: import_module(f"orchestrate.agents.{t}") for t in types if t != "command"}
    return found | {"command": import_module("orchestrate.core.command")}


def retry_at(delay_s: float | None, now: float) -> float:
    """`limited_until` for a limit whose structured output named a wait of `delay_s` seconds: 0.0 if it named none."""
    return now + delay_s if delay_s is not None and delay_s > 0 else 0.0


def number(value: object) -> float | None:
    """A JSON number as a float; None for anything else (a string, a bool, null)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def usd(amount: float) -> str:
    """A dollar amount as a CLI argument: plain decimal digits, exact, without exponent or trailing zeros."""
    return format(Decimal(repr(float(amount))).normalize(), "f")


def too_large_for_argv(prompt: str) -> bool:
    """The CLIs' rule: the prompt in the argv unless it is large, or holds what argv cannot carry."""
    return len(prompt.encode()) > PROMPT_ARG_MAX or "\0" in prompt


class JsonLines:
    """Shared parsing: JSON events on stdout go to `event`; other lines are kept as a tail."""

    # How a line on stderr begins when the CLI would not continue the session it was given (`--resume`),
    # for the CLIs that say so nowhere else: a stale session, and then the attempt runs afresh.
    session_refused: tuple[str, ...] = ()

    def __init__(self, agent: AgentConfig | None = None) -> None:
        self.tail: deque[str] = deque(maxlen=20)
        self.errors: deque[str] = deque(maxlen=ERRORS_KEPT)  # what the CLI's own error events said
        self.session_id: str | None = None
        self.refusal: str | None = None  # the stderr line that refused the session, kept whatever follows it

    def feed(self, line: str, stderr: bool) -> None:
        stripped = line.strip()
        if stderr and self.session_refused and self.refusal is None and stripped.startswith(self.session_refused):
            self.refusal = stripped
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

    def said(self, message: str) -> None:
        """Keep what one of the CLI's error events said, for the error of a run that fails."""
        self.errors.append(message if len(message) <= ANSWER_TAIL else message[:ANSWER_TAIL] + "…")

    def failure(
        self, exit_code: int, error: str | None, until: float | None = None, unauthorized: bool = False, **usage: Any
    ) -> Result:
        """A failed run: `until` is its `limited_until` (None: no limit), `unauthorized` when the CLI said its
        credentials were refused; with no `error`, what the CLI's error events and other output said."""
        text = error or f"exited {exit_code} without a result" + self.quoted(": ")
        return Result(
            False, "", text, session_id=self.session_id, limited_until=until, unauthorized=unauthorized, **usage
        )

    def stale(self, said: str) -> Result:
        """A run whose CLI would not continue the session it was given (`said` is how it refused): no session
        of its own, neither a limit nor refused credentials; the attempt runs the agent afresh."""
        return Result(False, "", f"{said} (it could not continue the earlier session)", stale_session=True)

    def printed(self, before: str, events: bool = False) -> str:
        """The end of what the CLI printed besides its JSON events (stderr among it), after `before`, with what
        its error events said first if `events`; "" if nothing."""
        lines = [*self.errors, *self.tail] if events else list(self.tail)
        return before + " | ".join(lines)[-OTHER_TAIL:] if lines else ""

    def quoted(self, before: str, other: bool = True) -> str:
        """What the CLI's error events said, then (if `other`) the end of its other output, after `before`;
        "" if nothing."""
        if not self.errors:
            return self.printed(before) if other else ""
        return before + " | ".join(self.errors) + (self.printed(" | its other output: ") if other else "")

    def reported_success(self, exit_code: int, answer: str) -> str:
        """The error of a run whose structured output said success but whose exit status says it failed:
        both, so that it never reads as a success, with the end of its answer and of its other output."""
        said = answer.strip()
        if not said:
            return f"exited {exit_code} after reporting success, with an empty answer" + self.printed(" | ", True)
        quoted = said if len(said) <= ANSWER_TAIL else "…" + said[-ANSWER_TAIL:]
        return f"exited {exit_code} after reporting success: {quoted}" + self.printed(" | its other output: ", True)
