"""Continuing a session and capping a run's spending: the argv each adapter builds for them, how each
Reader tells a CLI's refusal to resume (a stale session) from any other failure, fed what the real
CLIs print (Claude Code 2.1.197, codex-cli 0.171.0, Gemini CLI 0.61.0, run here without a session
to resume), and the adapters and the fake CLIs end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import FAKES

from orchestrate.agents import PROMPT_ARG_MAX, claude, codex, gemini, usd
from orchestrate.core import command
from orchestrate.core.agent import Result

ADAPTERS: dict[str, ModuleType] = {"claude": claude, "codex": codex, "gemini": gemini}
SESSION = "0b6e2c1a-1111-4222-8333-444455556666"
LARGE = "x" * (PROMPT_ARG_MAX + 1)


def finish(cli: str, stdout: list[dict[str, Any]], exit_code: int, stderr: tuple[str, ...] = ()) -> Result:
    reader = ADAPTERS[cli].Reader()
    for event in stdout:
        reader.feed(json.dumps(event), False)
    for line in stderr:
        reader.feed(line, True)
    result: Result = reader.finish(exit_code)
    return result


# --- argv --------------------------------------------------------------------------------------


def test_every_cli_adapter_resumes_and_a_command_does_not() -> None:
    assert all(adapter.resumes is True for adapter in ADAPTERS.values())
    assert command.resumes is False


def test_without_a_session_or_budget_the_argv_is_as_before() -> None:
    cmd = ("claude", "--permission-mode", "acceptEdits")
    headless = ["-p", "--output-format", "stream-json", "--verbose"]
    assert claude.argv(cmd, "-x", None, None) == ([*cmd, *headless, "--", "-x"], None)
    assert claude.argv(cmd, LARGE, None, None) == ([*cmd, *headless], LARGE)
    cmd = ("codex", "--ask-for-approval", "never", "exec")
    assert codex.argv(cmd, "-x", None, None) == ([*cmd, "--json", "--skip-git-repo-check", "--", "-x"], None)
    stdin = ["codex", "exec", "--json", "--skip-git-repo-check", "-"]
    assert codex.argv(("codex",), LARGE, None, None) == (stdin, LARGE)
    cmd = ("gemini", "--approval-mode", "yolo", "--skip-trust")
    assert gemini.argv(cmd, "-x", None, None) == ([*cmd, "--output-format", "stream-json", "--prompt=-x"], None)
    assert gemini.argv(cmd, LARGE, None, None) == ([*cmd, "--output-format", "stream-json"], LARGE)


def test_claude_resumes_with_resume_and_caps_with_max_budget_usd() -> None:
    cmd = ("claude", "--add-dir", "/data")  # a variadic option last: the flags after it end it
    headless = ["-p", "--output-format", "stream-json", "--verbose"]
    resume, cap = ["--resume", SESSION], ["--max-budget-usd", "0.5"]
    assert claude.argv(cmd, "-x", SESSION, 0.5) == ([*cmd, *resume, *cap, *headless, "--", "-x"], None)
    assert claude.argv(cmd, "go on", SESSION, None) == ([*cmd, *resume, *headless, "--", "go on"], None)
    assert claude.argv(cmd, "go on", None, 0.5) == ([*cmd, *cap, *headless, "--", "go on"], None)
    assert claude.argv(cmd, LARGE, SESSION, 0.5) == ([*cmd, *resume, *cap, *headless], LARGE)


@pytest.mark.parametrize(
    ("amount", "text"),
    [(0.5, "0.5"), (2.0, "2"), (2, "2"), (12.25, "12.25"), (1e-7, "0.0000001"), (0.1 + 0.2, "0.30000000000000004")],
)
def test_a_budget_is_written_plainly_and_exactly(amount: float, text: str) -> None:
    assert usd(amount) == text


def test_codex_resumes_with_the_resume_subcommand_after_execs_options() -> None:
    cmd = ("codex", "--ask-for-approval", "never", "--sandbox", "danger-full-access", "exec")
    base = [*cmd, "--json", "--skip-git-repo-check", "resume", SESSION]
    assert codex.argv(cmd, "-x", SESSION, 0.5) == ([*base, "--", "-x"], None)  # codex takes no budget
    assert codex.argv(cmd, LARGE, SESSION, None) == ([*base, "-"], LARGE)
    assert codex.argv(("codex",), "go", SESSION, None)[0][:2] == ["codex", "exec"]


def test_gemini_resumes_with_resume() -> None:
    cmd = ("gemini", "--skip-trust")
    base = [*cmd, "--output-format", "stream-json", "--resume", SESSION]
    assert gemini.argv(cmd, "-x", SESSION, 0.5) == ([*base, "--prompt=-x"], None)  # gemini takes no budget
    assert gemini.argv(cmd, LARGE, SESSION, None) == (base, LARGE)


# --- a stale session, in each CLI's own words ----------------------------------------------------

ZERO = {"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 0}


def claude_error(errors: list[str], session_id: str = SESSION, **fields: Any) -> dict[str, Any]:
    """Claude Code's error_during_execution result, as 2.1.197 printed it for a --resume it could not honour."""
    event = {"type": "result", "subtype": "error_during_execution", "duration_ms": 0, "duration_api_ms": 0}
    event |= {"is_error": True, "num_turns": 0, "stop_reason": None, "session_id": session_id, "total_cost_usd": 0}
    return {**event, "usage": ZERO, "modelUsage": {}, "permission_denials": [], "errors": errors, **fields}


NO_CONVERSATION = f"No conversation found with session ID: {SESSION}"
NOT_A_UUID = (
    "Error: --resume requires a valid session ID or session title when used with --print. Usage: claude -p"
    ' --resume <session-id|title>. Provided value "notauuid" is not a UUID and does not match any session title.'
)
CODEX_STDERR = (
    "WARNING: proceeding, even though we could not create PATH aliases: Refusing to create helper binaries under"
    ' temporary dir "/tmp" (codex_home: AbsolutePathBuf("/tmp/home/.codex"))',
    f"Error: thread/resume: thread/resume failed: no rollout found for thread id {SESSION} (code -32600)",
    "",
    "Stack backtrace:",
    *(f"  {n:2}: <unknown>" for n in range(24)),  # more lines than the Reader keeps of its other output
)
GEMINI_NONE = "Error resuming session: No previous sessions found for this project."
GEMINI_INVALID = (
    f'Error resuming session: Invalid session identifier "{SESSION}".',
    "  Searched for sessions in /root/.gemini/tmp/proj/chats.",
    "  Use --list-sessions to see available sessions, then use --resume {number}, --resume {uuid}, or --resume latest.",
)
NEW_ID = "a9f7d3a1-bdcc-4a63-98f7-a09ff53be093"  # claude names a new session in the result of an id it rejects
STALE: list[tuple[str, list[dict[str, Any]], int, tuple[str, ...], str]] = [
    ("claude", [claude_error([NO_CONVERSATION])], 1, (NO_CONVERSATION,), NO_CONVERSATION),
    ("claude", [claude_error([NOT_A_UUID], session_id=NEW_ID)], 1, (NOT_A_UUID,), NOT_A_UUID),
    ("claude", [], 1, (NO_CONVERSATION,), NO_CONVERSATION),  # had it printed no result: its stderr says
    ("codex", [], 1, CODEX_STDERR, CODEX_STDERR[1]),
    ("gemini", [], 42, (GEMINI_NONE,), GEMINI_NONE),
    ("gemini", [], 42, GEMINI_INVALID, GEMINI_INVALID[0]),
]


@pytest.mark.parametrize(("cli", "stdout", "code", "stderr", "said"), STALE)
def test_a_refused_session_is_stale_and_neither_a_limit_nor_refused_credentials(
    cli: str, stdout: list[dict[str, Any]], code: int, stderr: tuple[str, ...], said: str
) -> None:
    result = finish(cli, stdout, code, stderr)
    assert (result.ok, result.stale_session) == (False, True)
    assert (result.limited_until, result.unauthorized) == (None, False)
    assert result.session_id is None  # the session it named is none to continue
    assert result.error == f"{said} (it could not continue the earlier session)"


def test_claude_other_errors_during_execution_are_not_stale() -> None:
    interrupted = claude_error(["Request was aborted."], num_turns=1)
    assert finish("claude", [interrupted], 0).stale_session is False


def test_claude_a_result_is_believed_over_its_stderr_and_its_answer_text() -> None:
    """Where the result has `errors`, they decide: not words on stderr, nor an answer that quotes the message."""
    failed = {**claude_error(["Request was aborted."]), "session_id": "s-2"}
    assert finish("claude", [failed], 1, (NO_CONVERSATION,)).stale_session is False
    quoting = {"type": "result", "subtype": "success", "is_error": True, "api_error_status": 400}
    quoting |= {"result": f"API Error: 400 {NO_CONVERSATION}", "session_id": "s-2"}
    assert finish("claude", [quoting], 1).stale_session is False


def test_codex_the_words_anywhere_but_its_stderr_are_not_a_refusal() -> None:
    said = CODEX_STDERR[1]
    events = [
        {"type": "thread.started", "thread_id": "t-1"},
        {"type": "item.completed", "item": {"id": "item_0", "type": "agent_message", "text": said}},
        {"type": "turn.failed", "error": {"message": said}},
    ]
    result = finish("codex", events, 1)
    assert (result.stale_session, result.error) == (False, said)
    other = "Error: failed to initialize in-process app-server client: boom"  # no thread/resume refused
    assert finish("codex", [], 1, (other,)).stale_session is False


def test_gemini_exit_42_for_another_reason_is_not_stale() -> None:
    no_input = "No input provided via stdin. Input can be provided by piping data into gemini or using the --prompt"
    assert finish("gemini", [], 42, (no_input + " option.",)).stale_session is False
    assert finish("gemini", [], 1, (GEMINI_NONE,)).stale_session is False  # the words without its exit status


# --- a budget ------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [1, 0])
def test_claude_a_run_stopped_at_its_budget_failed_and_says_the_budget_was_reached(code: int) -> None:
    """Claude Code's error_max_budget_usd result carries the cost so far and `errors`, no `result`."""
    usage = {**ZERO, "input_tokens": 120_000, "output_tokens": 9_000}
    stopped = claude_error(["Reached maximum budget ($0.5)"], subtype="error_max_budget_usd", num_turns=7)
    result = finish("claude", [stopped | {"total_cost_usd": 0.5213, "usage": usage, "stop_reason": "tool_use"}], code)
    assert (result.ok, result.stale_session, result.limited_until, result.unauthorized) == (False, False, None, False)
    assert result.error == (
        "error_max_budget_usd: Reached maximum budget ($0.5): the run reached its budget (max_cost_usd) after"
        " spending $0.5213 and was stopped before it finished"
    )
    assert (result.cost_usd, result.input_tokens, result.session_id) == (0.5213, 120_000, SESSION)


# --- the adapters and the fakes ------------------------------------------------------------------

COMMANDS = {
    "claude": ("claude", "--permission-mode", "acceptEdits"),
    "codex": ("codex", "--ask-for-approval", "never", "--sandbox", "danger-full-access", "exec"),
    "gemini": ("gemini", "--approval-mode", "yolo", "--skip-trust"),
}


def run(cli: str, prompt: str, session: str | None, budget: float | None = None) -> Result:
    """One run of the fake `cli` as orchestrate makes it: the adapter's argv and stdin, its Reader's verdict."""
    args, stdin = ADAPTERS[cli].argv(COMMANDS[cli], prompt, session, budget)
    devnull = subprocess.DEVNULL if stdin is None else None  # as the core runs it: never an open, silent pipe
    done = subprocess.run(
        [str(FAKES / args[0]), *args[1:]], stdin=devnull, input=stdin, capture_output=True, text=True, timeout=30
    )
    reader = ADAPTERS[cli].Reader()
    for line in done.stdout.splitlines():
        reader.feed(line, False)
    for line in done.stderr.splitlines():
        reader.feed(line, True)
    result: Result = reader.finish(done.returncode)
    return result


@pytest.mark.parametrize("cli", ADAPTERS)
def test_a_session_continues_until_the_cli_forgets_it(cli: str, project: Path, fakes: Path) -> None:
    first = run(cli, "Create NOTES.md with the plan", None)
    assert first.ok and first.session_id
    (project / "NOTES.md").unlink()
    again = run(cli, "-your last attempt did not succeed; continue", first.session_id)
    assert (again.ok, again.session_id, again.stale_session) == (True, first.session_id, False)
    assert (project / "NOTES.md").exists()  # it remembered its task
    started = [json.loads(line) for line in fakes.read_text().splitlines() if "argv" in line]
    assert started[-1]["resumed"] == first.session_id
    shutil.rmtree(os.environ["FAKE_SESSIONS_DIR"])
    forgotten = run(cli, "continue", first.session_id)
    assert (forgotten.ok, forgotten.stale_session) == (False, True)
    assert (forgotten.limited_until, forgotten.unauthorized) == (None, False)


def test_gemini_a_failed_run_leaves_no_session_to_continue(project: Path, fakes: Path) -> None:
    failed = run("gemini", "Broken [fake:fail]", None)
    assert not failed.ok and failed.session_id
    assert run("gemini", "continue", failed.session_id).stale_session is True


def test_claude_a_run_that_reaches_its_budget_fails_and_says_so(project: Path, fakes: Path) -> None:
    result = run("claude", "Expensive [fake:cost=0.75]", None, budget=0.5)
    assert (result.ok, result.cost_usd, result.stale_session) == (False, 0.75, False)
    assert (result.error or "").startswith("error_max_budget_usd: Reached maximum budget ($0.5): the run reached")
    assert run("claude", "Cheap [fake:cost=0.25]", None, budget=0.5).ok
