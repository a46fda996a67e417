"""Gemini CLI: `gemini [flags] --output-format stream-json --prompt=PROMPT` (or the prompt on stdin)."""

from __future__ import annotations

from typing import Any

from orchestrate.agents import JsonLines, too_large_for_argv
from orchestrate.core.agent import Result

QUOTA_ERRORS = ("TerminalQuotaError", "RetryableQuotaError")  # the error types a limit is reported with
LIMIT_EXIT = 429 % 256  # gemini exits with an API error's HTTP status, mod 256
detaches = True  # its shell tool's commands survive its process group


def argv(command: tuple[str, ...], prompt: str) -> tuple[list[str], str | None]:
    if too_large_for_argv(prompt):
        return [*command, "--output-format", "stream-json"], prompt  # no --prompt: headless on stdin
    # --prompt=TEXT, not -p TEXT, so that a prompt starting with "-" stays a value
    return [*command, "--output-format", "stream-json", f"--prompt={prompt}"], None


class Reader(JsonLines):
    def __init__(self, agent: object = None) -> None:
        super().__init__()
        self.chunks: list[str] = []
        self.result: dict[str, Any] | None = None
        self.error: str | None = None
        self.limited = False

    def event(self, event: dict[str, Any], stderr: bool) -> None:
        self.session_id = event.get("session_id") or self.session_id
        kind, error = event.get("type"), event.get("error")
        if kind == "message" and event.get("role") == "assistant":
            self.chunks.append(str(event.get("content", "")))
        elif kind == "result":
            self.result = event
        elif kind == "error" and event.get("message"):  # a warning, or what a broken stream's result will not say
            self.tail.append(str(event["message"]))
        # The result's error, or the json format's: a fatal one on stderr, a broken stream's on stdout.
        # A tool_result's error is a failed tool call, which the agent may get over: the result says.
        if isinstance(error, dict) and kind in ("result", None):
            self.error = f"{error.get('type', 'Error')}: {error.get('message', '')}"
            self.limited = error.get("type") in QUOTA_ERRORS or error.get("code") == 429

    def finish(self, exit_code: int) -> Result:
        stats = (self.result or {}).get("stats") or {}
        counts = {"input_tokens": stats.get("input_tokens"), "output_tokens": stats.get("output_tokens")}
        status = self.result.get("status") if self.result else None
        limited = self.limited or exit_code == LIMIT_EXIT
        if self.error is None and status == "success":
            if exit_code == 0:
                return Result(True, "".join(self.chunks), session_id=self.session_id, **counts)
            return self.failure(exit_code, self.reported_success(exit_code, "".join(self.chunks)), limited, **counts)
        ended = f"exited {exit_code} after reporting status {status!r}" + self.printed(": ") if self.result else None
        return self.failure(exit_code, self.error or ended, limited, **counts)
