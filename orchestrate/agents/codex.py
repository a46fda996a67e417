"""Codex: `codex [flags] exec --json --skip-git-repo-check [resume ID] -- PROMPT` (or `-` to read stdin)."""

from __future__ import annotations

import re
from typing import Any

from orchestrate.agents import AUTH_STATUSES, JsonLines, too_large_for_argv
from orchestrate.core.agent import Argv, Result

# The HTTP status codex names at the start of a failure: after its retries, or when it does not retry.
STATUS = re.compile(r"(?:exceeded retry limit, last status|unexpected status):? (\d{3})\b")
# How codex reports a plan's quota or usage limit, which it does not retry; it prints no reset time.
QUOTA = ("Quota exceeded", "You've hit your usage limit")
LOGIN = "log in with `codex login` or set OPENAI_API_KEY (this agent's env: in config.yaml)"
# How codex exec refuses to continue a session, on stderr with nothing on stdout, exit 1: its `thread/resume`
# request failed ("{method}: {err}" in codex-rs/exec/src/lib.rs, around app-server-client's "{method} failed:
# {message}"). For an id with no rollout: "Error: thread/resume: thread/resume failed: no rollout found for thread
# id ID (code -32600)" (the message from codex-rs/thread-store/src/local/read_thread.rs; seen so on codex-cli 0.171),
# then a backtrace; an archived thread fails the same request. Nothing structured comes before a thread exists.
SESSION_REFUSED = ("Error: thread/resume: ",)
detaches = False  # its tools die with its process group
resumes = True


def argv(command: tuple[str, ...], prompt: str, session: str | None, budget: float | None) -> Argv:
    base = [*command, *([] if "exec" in command else ["exec"]), "--json", "--skip-git-repo-check"]
    if session:  # a subcommand of exec, after exec's own options; the prompt is the positional after the id
        base += ["resume", session]
    if too_large_for_argv(prompt):
        return [*base, "-"], prompt  # `-`: read the prompt from stdin
    return [*base, "--", prompt], None  # `--`: clap takes what follows as positionals, a leading "-" too


def status(message: str) -> int | None:
    """The HTTP status a codex failure names, or None."""
    found = STATUS.match(message)
    return int(found.group(1)) if found else None


class Reader(JsonLines):
    session_refused = SESSION_REFUSED

    def __init__(self, agent: object = None) -> None:
        super().__init__()
        self.message = ""
        self.usage: dict[str, Any] | None = None
        self.error: str | None = None
        self.last_error: str | None = None  # the last error event: not fatal by itself

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
        elif kind == "error" and event.get("message"):  # kept to explain a run that died
            self.last_error = str(event["message"])
            self.said(self.last_error)

    def finish(self, exit_code: int, now: float | None = None) -> Result:
        if self.refusal and self.usage is None and self.error is None:  # it never began a turn
            return self.stale(self.refusal)
        usage = self.usage or {}
        counts: dict[str, Any] = {
            "input_tokens": usage.get("input_tokens"),
            "output_tokens": usage.get("output_tokens"),
        }
        completed = self.usage is not None and self.error is None  # turn.completed, and no turn.failed
        if exit_code == 0 and completed:
            return Result(True, self.message, session_id=self.session_id, **counts)
        if completed:
            return self.failure(exit_code, self.reported_success(exit_code, self.message), **counts)
        said = self.error or self.last_error or ""  # what failed the turn, or what the run last said before it died
        error = self.error or f"exited {exit_code} without a result" + self.quoted(": ")
        if status(said) in AUTH_STATUSES:
            return self.failure(exit_code, f"{error}: {LOGIN}", unauthorized=True, **counts)
        limited = status(said) == 429 or said.startswith(QUOTA)
        return self.failure(exit_code, error, 0.0 if limited else None, **counts)
