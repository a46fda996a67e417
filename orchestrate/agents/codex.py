"""Codex: `codex [flags] exec --json --skip-git-repo-check -- PROMPT` (or `-` to read stdin)."""

from __future__ import annotations

import re
from typing import Any

from orchestrate.agents import JsonLines, too_large_for_argv
from orchestrate.core.agent import Result

# How turn.failed's message reports a limit: codex's own words after its retries, or the API's.
LIMITED = re.compile(r"last status: 429|Quota exceeded|\brate limit", re.I)
detaches = False  # its tools die with its process group


def argv(command: tuple[str, ...], prompt: str) -> tuple[list[str], str | None]:
    base = [*command, *([] if "exec" in command else ["exec"]), "--json", "--skip-git-repo-check"]
    if too_large_for_argv(prompt):
        return [*base, "-"], prompt  # `-`: read the prompt from stdin
    return [*base, "--", prompt], None


class Reader(JsonLines):
    def __init__(self, agent: object = None) -> None:
        super().__init__()
        self.message = ""
        self.usage: dict[str, Any] | None = None
        self.error: str | None = None

    def event(self, event: dict[str, Any], stderr: bool) -> None:
        kind, item = event.get("type"), event.get("item") or {}
        if kind == "thread.started":
            self.session_id = event.get("thread_id")
        elif kind == "item.completed" and item.get("type") == "agent_message":
            self.message = item.get("text", "")
        elif kind == "turn.completed":
            self.usage = event.get("usage") or {}
        elif kind == "turn.failed":
            self.error = (event.get("error") or {}).get("message") or "turn failed"
        elif kind == "error" and event.get("message"):  # not fatal by itself; kept to explain a run that died
            self.tail.append(str(event["message"]))

    def finish(self, exit_code: int) -> Result:
        usage = self.usage or {}
        counts = {"input_tokens": usage.get("input_tokens"), "output_tokens": usage.get("output_tokens")}
        completed = self.usage is not None and self.error is None  # turn.completed, and no turn.failed
        if exit_code == 0 and completed:
            return Result(True, self.message, session_id=self.session_id, **counts)
        if completed:
            return self.failure(exit_code, self.reported_success(exit_code, self.message), False, **counts)
        limited = self.error is not None and bool(LIMITED.search(self.error))
        return self.failure(exit_code, self.error, limited, **counts)
