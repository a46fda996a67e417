"""Gemini CLI: `gemini [flags] --output-format stream-json [--resume ID] --prompt=PROMPT` (or the prompt on stdin)."""

from __future__ import annotations

import json
import time
from typing import Any

from orchestrate.agents import AUTH_STATUSES, JsonLines, number, retry_at, too_large_for_argv
from orchestrate.core.agent import Argv, Result

QUOTA_ERRORS = ("TerminalQuotaError", "RetryableQuotaError")  # the error types a limit is reported with
DAILY = "TerminalQuotaError"  # a quota gemini will not retry (a day's): whatever delay the API names is not its reset
AUTH_ERRORS = ("FatalAuthenticationError",)  # the error type of exit 41
KEY_REFUSED = ("API key not valid", "API_KEY_INVALID")  # the Gemini API's message and ErrorInfo reason for a bad key
AUTH_EXIT = 41  # no usable auth method
# gemini exits with an API error's HTTP status, mod 256
LIMIT_EXIT = 429 % 256
REFUSED_EXITS = {s % 256 for s in AUTH_STATUSES}
# A --resume gemini cannot honour: exit 42 (FatalInputError, also for no input at all) after a stderr line
# "Error resuming session: " and SessionError's message: "No previous sessions found for this project." (none saved
# here: a failed run's is not listed) or 'Invalid session identifier "ID".' (packages/cli/src/gemini.tsx,
# utils/sessionUtils.ts; the first seen so on 0.61). Nothing structured is printed: stderr is all there is.
INPUT_EXIT = 42
SESSION_REFUSED = ("Error resuming session: ",)
LOGIN = "set GEMINI_API_KEY (this agent's env: in config.yaml), or choose how to log in by running `gemini` once"
detaches = True  # its shell tool's commands survive its process group
resumes = True


def argv(command: tuple[str, ...], prompt: str, session: str | None, budget: float | None) -> Argv:
    base = [*command, "--output-format", "stream-json", *(("--resume", session) if session else ())]
    if too_large_for_argv(prompt):
        return base, prompt  # no --prompt: headless on stdin
    # --prompt=TEXT, not -p TEXT, so that a prompt starting with "-" stays a value
    return [*base, f"--prompt={prompt}"], None


def api_error(error: dict[str, Any]) -> dict[str, Any]:
    """The Gemini API's own error object behind one of gemini's: the JSON body its message quotes
    (`{"error": {"code", "status", "details"}}`), or the error itself when it carries details; {} if neither."""
    message, decoder = str(error.get("message", "")), json.JSONDecoder()
    start = message.find("{")
    for _ in range(3):  # the body is the first object that parses, near the start
        if start < 0:
            break
        try:
            body, _end = decoder.raw_decode(message, start)
        except ValueError:
            start = message.find("{", start + 1)
            continue
        inner = body.get("error", body) if isinstance(body, dict) else None
        return inner if isinstance(inner, dict) else {}
    return error if isinstance(error.get("details"), list) else {}


def details(api: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The API error's details of type google.rpc.`kind` (RetryInfo, ErrorInfo, QuotaFailure)."""
    found = api.get("details")
    items = found if isinstance(found, list) else []
    return [d for d in items if isinstance(d, dict) and str(d.get("@type", "")).endswith(f".{kind}")]


def retry_delay(api: dict[str, Any]) -> float | None:
    """The seconds the API's RetryInfo says to wait (a protobuf duration, "37s" or "2.5s"), or None."""
    for info in details(api, "RetryInfo"):
        delay = info.get("retryDelay")
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return float(delay[:-1])
            except ValueError:
                return None
    return None


def refused(error: dict[str, Any], api: dict[str, Any], exit_code: int) -> bool:
    """Whether gemini's exit status or error says its credentials were missing or refused."""
    if exit_code == AUTH_EXIT or exit_code in REFUSED_EXITS or error.get("type") in AUTH_ERRORS:
        return True
    if number(error.get("code")) in AUTH_STATUSES or number(api.get("code")) in AUTH_STATUSES:
        return True
    reasons = [str(info.get("reason")) for info in details(api, "ErrorInfo")]
    return any(sign in str(error.get("message", "")) or sign in reasons for sign in KEY_REFUSED)


def limited_until(error: dict[str, Any], api: dict[str, Any], exit_code: int, now: float) -> float | None:
    """When the limit a failed run reported resets: now plus the API's retry delay, 0.0 when it names
    none or the quota is a day's; None if the run reported no limit."""
    codes = (number(error.get("code")), number(api.get("code")))
    quota = error.get("type") in QUOTA_ERRORS or api.get("status") == "RESOURCE_EXHAUSTED"
    if not (quota or 429 in codes or exit_code == LIMIT_EXIT):
        return None
    return 0.0 if error.get("type") == DAILY else retry_at(retry_delay(api), now)


class Reader(JsonLines):
    session_refused = SESSION_REFUSED

    def __init__(self, agent: object = None) -> None:
        super().__init__()
        self.chunks: list[str] = []
        self.result: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None

    def event(self, event: dict[str, Any], stderr: bool) -> None:
        self.session_id = event.get("session_id") or self.session_id
        kind, error = event.get("type"), event.get("error")
        if kind == "message" and event.get("role") == "assistant":
            self.chunks.append(str(event.get("content", "")))
        elif kind == "result":
            self.result = event
        elif kind == "error" and event.get("message"):  # a warning, or what a broken stream's result will not say
            self.said(str(event["message"]))
        # The result's error, or the json format's: a fatal one on stderr, a broken stream's on stdout.
        # A tool_result's error is a failed tool call, which the agent may get over: the result says.
        if isinstance(error, dict) and kind in ("result", None):
            self.error = error

    def finish(self, exit_code: int, now: float | None = None) -> Result:
        now = time.time() if now is None else now
        if exit_code == INPUT_EXIT and self.refusal:
            return self.stale(self.refusal)
        stats = (self.result or {}).get("stats") or {}
        counts: dict[str, Any] = {
            "input_tokens": stats.get("input_tokens"),
            "output_tokens": stats.get("output_tokens"),
        }
        status = self.result.get("status") if self.result else None
        if self.error is None and status == "success" and exit_code == 0:
            return Result(True, "".join(self.chunks), session_id=self.session_id, **counts)
        error, api = self.error or {}, api_error(self.error or {})
        if self.error is None and status == "success":
            text = self.reported_success(exit_code, "".join(self.chunks))
        elif self.error is not None:
            text = f"{error.get('type', 'Error')}: {error.get('message', '')}" + self.quoted(" | ", other=False)
        elif self.result is not None:
            text = f"exited {exit_code} after reporting status {status!r}" + self.quoted(": ")
        else:
            text = f"exited {exit_code} without a result" + self.quoted(": ")
        if refused(error, api, exit_code):
            return self.failure(exit_code, f"{text}: {LOGIN}", unauthorized=True, **counts)
        return self.failure(exit_code, text, limited_until(error, api, exit_code, now), **counts)
