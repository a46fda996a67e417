"""Claude Code: `claude [--resume ID] [--max-budget-usd USD] -p --output-format stream-json --verbose -- PROMPT`."""

from __future__ import annotations

import re
import time
from typing import Any

from orchestrate.agents import AUTH_STATUSES, JsonLines, number, retry_at, too_large_for_argv, usd
from orchestrate.core.agent import Argv, Result

ROOT_REFUSAL = "cannot be used with root/sudo privileges"
USAGE_LIMIT = re.compile(r"Claude AI usage limit reached(?:\|(\d+))?")  # a subscription's limit, and when it resets
REFUSED = ("Invalid API key", "Not logged in")  # how the result of a refused or missing login begins
LOGIN = "log in with `claude /login` or set ANTHROPIC_API_KEY (this agent's env: in config.yaml)"
# How claude refuses a --resume it cannot honour, in its result's `errors` (an error_during_execution result,
# exit 1) and on stderr: no transcript of that id in this directory's project, or an id that is no session's.
SESSION_REFUSED = ("No conversation found with session ID", "Error: --resume requires a valid session ID")
BUDGET = "error_max_budget_usd"  # the subtype of a run stopped by --max-budget-usd
detaches = True  # its Bash tool runs commands in sessions of their own
resumes = True
HEADLESS = ("-p", "--output-format", "stream-json", "--verbose")


def argv(command: tuple[str, ...], prompt: str, session: str | None, budget: float | None) -> Argv:
    resume = ("--resume", session) if session else ()
    cap = ("--max-budget-usd", usd(budget)) if budget is not None else ()
    flags = [*command, *resume, *cap, *HEADLESS]
    if too_large_for_argv(prompt):
        return flags, prompt
    return [*flags, "--", prompt], None  # `--`: a prompt starting with "-" is not an option


def limited_until(message: str, status: object, retry: dict[str, Any] | None, now: float) -> float | None:
    """When the limit a failed run reported resets: the usage limit's own time, else the wait claude's last
    retry of a 429 named (`retry_delay_ms`, which honours the API's retry-after); None if it was no limit."""
    usage = USAGE_LIMIT.match(message)
    if usage and usage.group(1):
        return float(usage.group(1))
    if not usage and status != 429:
        return None
    delay = number(retry.get("retry_delay_ms")) if retry and retry.get("error_status") == 429 else None
    return retry_at(delay / 1000 if delay is not None else None, now)


def budget_reached(message: str, spent: float | None) -> str:
    """The error of a run that --max-budget-usd stopped: a failure that says the budget was reached."""
    said = f"{BUDGET}: {message}" if message else BUDGET
    cost = f" after spending ${spent:.4f}" if spent is not None else ""
    return f"{said}: the run reached its budget (max_cost_usd){cost} and was stopped before it finished"


class Reader(JsonLines):
    session_refused = SESSION_REFUSED

    def __init__(self, agent: object = None) -> None:
        super().__init__()
        self.result: dict[str, Any] | None = None
        self.retry: dict[str, Any] | None = None  # the last api_retry event: the status claude was retrying

    def event(self, event: dict[str, Any], stderr: bool) -> None:
        self.session_id = event.get("session_id") or self.session_id
        if event.get("type") == "result":
            self.result = event
        elif event.get("type") == "system" and event.get("subtype") == "api_retry":
            self.retry = event

    def finish(self, exit_code: int, now: float | None = None) -> Result:
        now = time.time() if now is None else now
        if any(ROOT_REFUSAL in line for line in self.tail):
            return self.failure(
                exit_code,
                'Claude Code refuses --dangerously-skip-permissions as root: add IS_SANDBOX: "1" to'
                " this agent's env: in config.yaml (inside a sandbox only), or use --permission-mode acceptEdits",
            )
        if refused := self.refused_session():
            return self.stale(refused)
        if self.result is None:
            return self.no_result(exit_code, now)
        r = self.result
        usage = r.get("usage") or {}
        counts: dict[str, Any] = {
            "cost_usd": r.get("total_cost_usd"),
            "input_tokens": usage.get("input_tokens"),
            "output_tokens": usage.get("output_tokens"),
        }
        message = r.get("result") or "; ".join(map(str, r.get("errors") or []))
        subtype, status = r.get("subtype"), r.get("api_error_status")
        succeeded = subtype == "success" and not r.get("is_error")
        if exit_code == 0 and succeeded:
            return Result(True, message, session_id=self.session_id, **counts)
        api_error = subtype == "success" and not succeeded  # is_error, with the API's message in `result`
        if api_error and status is None and self.retry:  # a null status: the one it was retrying
            status = self.retry.get("error_status")
        until = limited_until(message, status, self.retry, now)
        if succeeded and until is None:
            return self.failure(exit_code, self.reported_success(exit_code, message), **counts)
        if subtype == BUDGET:
            error = budget_reached(message, number(counts["cost_usd"]))
        elif subtype != "success":  # error_max_turns and the like: their errors, if any
            error = f"{subtype}: {message}" if message else str(subtype)
        else:
            error = message or f"exited {exit_code} after reporting an error (is_error) without a message"
        error = f"{error} (HTTP {status})" if status else error
        if status in AUTH_STATUSES or (api_error and message.startswith(REFUSED)):
            return self.failure(exit_code, f"{error}: {LOGIN}", unauthorized=True, **counts)
        return self.failure(exit_code, error, until, **counts)

    def refused_session(self) -> str | None:
        """How claude refused to continue the session it was given: its result's `errors` say, or, were there
        no result, its stderr; None if it did not."""
        if self.result is None:
            return self.refusal
        errors = self.result.get("errors")
        said = [str(e) for e in errors] if isinstance(errors, list) else []
        return next((e for e in said if e.startswith(SESSION_REFUSED)), None)

    def no_result(self, exit_code: int, now: float) -> Result:
        """A run that printed no result: what its last API retry was for decides, if it made one."""
        if self.retry is None:
            return self.failure(exit_code, None)
        status = self.retry.get("error_status")
        error = (
            f"exited {exit_code} without a result; its last API retry was for HTTP {status} ({self.retry.get('error')})"
        )
        error += self.quoted(" | ")
        if status in AUTH_STATUSES:
            return self.failure(exit_code, f"{error}: {LOGIN}", unauthorized=True)
        return self.failure(exit_code, error, limited_until("", status, self.retry, now))
