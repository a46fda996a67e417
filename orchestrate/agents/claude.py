"""Claude Code: `claude -p --output-format stream-json --verbose -- PROMPT`."""

from __future__ import annotations

from typing import Any

from orchestrate.agents import JsonLines, too_large_for_argv
from orchestrate.core.agent import Result

ROOT_REFUSAL = "cannot be used with root/sudo privileges"
USAGE_LIMIT = "Claude AI usage limit reached"  # the result's text when a subscription runs out
detaches = True  # its Bash tool runs commands in sessions of their own
HEADLESS = ("-p", "--output-format", "stream-json", "--verbose")


def argv(command: tuple[str, ...], prompt: str) -> tuple[list[str], str | None]:
    if too_large_for_argv(prompt):
        return [*command, *HEADLESS], prompt
    return [*command, *HEADLESS, "--", prompt], None  # `--`: a prompt starting with "-" is not an option


class Reader(JsonLines):
    def __init__(self, agent: object = None) -> None:
        super().__init__()
        self.result: dict[str, Any] | None = None

    def event(self, event: dict[str, Any], stderr: bool) -> None:
        self.session_id = event.get("session_id") or self.session_id
        if event.get("type") == "result":
            self.result = event

    def finish(self, exit_code: int) -> Result:
        if any(ROOT_REFUSAL in line for line in self.tail):
            return self.failure(
                exit_code,
                'Claude Code refuses --dangerously-skip-permissions as root: add IS_SANDBOX: "1" to'
                " this agent's env: in config.yaml (inside a sandbox only), or use --permission-mode acceptEdits",
            )
        r = self.result
        if r is None:
            return self.failure(exit_code, None)
        usage = r.get("usage") or {}
        counts = {
            "cost_usd": r.get("total_cost_usd"),
            "input_tokens": usage.get("input_tokens"),
            "output_tokens": usage.get("output_tokens"),
        }
        message = r.get("result") or "; ".join(map(str, r.get("errors") or []))
        subtype, status = r.get("subtype"), r.get("api_error_status")
        succeeded = subtype == "success" and not r.get("is_error")
        if exit_code == 0 and succeeded:
            return Result(True, message, session_id=self.session_id, **counts)
        limited = status == 429 or message.startswith(USAGE_LIMIT)
        if succeeded and not limited:
            return self.failure(exit_code, self.reported_success(exit_code, message), False, **counts)
        if subtype != "success":  # error_max_turns and the like: their errors, if any
            error = f"{subtype}: {message}" if message else str(subtype)
        else:  # is_error, with the API's message in `result`
            error = message or f"exited {exit_code} after reporting an error (is_error) without a message"
        return self.failure(exit_code, f"{error} (HTTP {status})" if status else error, limited, **counts)
