"""Rate limits and refused credentials end to end: a real head, the installed CLI and the fake agent CLIs,
which print the limit's wait and the refusal in each real CLI's own structured fields."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import wait_until
from test_head import configure, ok, runs, task, wait_for

LOGIN = {
    "claude": "log in with `claude /login` or set ANTHROPIC_API_KEY (this agent's env: in config.yaml)",
    "codex": "log in with `codex login` or set OPENAI_API_KEY (this agent's env: in config.yaml)",
    "gemini": "set GEMINI_API_KEY (this agent's env: in config.yaml), or choose how to log in by running `gemini` once",
}
REFUSED = {  # what each fake CLI says when it has no login, as the real one does
    "claude": "Not logged in · Please run /login",
    "codex": "unexpected status 401 Unauthorized: Missing bearer or basic authentication in header",
    "gemini": "FatalAuthenticationError: Please set an Auth method in your ",
}


def unavailable(slot: str) -> str | None:
    """Why `status` says agent `slot` is unavailable; None while it is not."""
    prefix = f"unavailable {slot}: "
    return next((line[len(prefix) :] for line in ok("status").splitlines() if line.startswith(prefix)), None)


def more(cli: str) -> str:
    return "" if cli == "claude" else f"  {cli}: {{}}"


@pytest.mark.parametrize("cli", ["claude", "gemini"])
def test_a_rate_limit_waits_as_long_as_the_cli_said(project: Path, fakes: Path, cli: str) -> None:
    """The CLI named a 3 s wait (claude's retry_delay_ms, the API's RetryInfo in gemini's error): the
    agent cooled 3 s, not the fixed 60 s, and the limited run spent none of the task's attempts."""
    configure(project, retries=0, more=more(cli))
    ok("start")
    ok("add", "Busy work [fake:ratelimit=3] [fake:fail-times=1]", "--agent", cli)
    done = wait_for(1, "completed", timeout=30)
    assert (done["agent"], done["attempts"]) == (f"{cli}-1", 1)
    limited = next(r for r in runs(fakes) if r.get("outcome") == "ratelimit")
    second = [r for r in runs(fakes) if "argv" in r][1]
    assert 2.9 <= second["time"] - limited["time"] < 20
    ok("stop")
    said = (project / ".orchestrate/head.log").read_text()
    assert said.count("hit a rate limit; cooling until") == 1  # the limited run's, and no other's


def test_a_refused_login_makes_the_agent_unavailable_and_says_what_to_fix(project: Path, fakes: Path) -> None:
    """claude alone: its task goes back unspent and waits, its error saying what claude said and how to fix it.
    (The unavailable agent and the unspent task are the core's: orchestrate/core/attempt.py.)"""
    configure(project, retries=2)
    ok("start")
    ok("add", "Needs a login [fake:auth]")
    error = f"{REFUSED['claude']}: {LOGIN['claude']}"
    assert wait_until(lambda: unavailable("claude-1"), message="claude to be unavailable") == error
    waiting = wait_until(lambda: (t := task(1))["status"] == "pending" and t["error"] and t, message="task 1 back")
    assert (waiting["attempts"], waiting["error"]) == (0, error)
    assert len([r for r in runs(fakes) if "argv" in r]) == 1
    ok("stop")


@pytest.mark.parametrize("cli", ["codex", "gemini"])
def test_a_refused_login_hands_the_task_to_another_agent(project: Path, fakes: Path, cli: str) -> None:
    """The task prefers `cli`, whose login is refused once: `cli` is unavailable, saying what to fix, and
    claude does the task on its first spent attempt. (The hand-over is the core's.)"""
    configure(project, retries=0, more=more(cli))
    ok("start")
    ok("add", "Needs a login [fake:auth] [fake:fail-times=1]", "--agent", cli)
    done = wait_for(1, "completed", timeout=30)
    assert (done["agent"], done["attempts"]) == ("claude-1", 1)
    # The agents table is published once a second: the task may well be done before it shows.
    why = wait_until(lambda: unavailable(f"{cli}-1"), message=f"status to say {cli} is unavailable")
    assert why.startswith(REFUSED[cli]) and why.endswith(f": {LOGIN[cli]}")
    ok("stop")
