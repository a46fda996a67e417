"""What a failed run's error says: each adapter's Reader.finish, case by case, where the exit status
and the CLI's structured output disagree (pure logic), and one such run end to end with a fake CLI."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import orchestrate
from test_head import configure, ok, task

from orchestrate.agents import claude, codex, gemini
from orchestrate.core.agent import Result

ADAPTERS: dict[str, ModuleType] = {"claude": claude, "codex": codex, "gemini": gemini}
ANSWER = "Done: wrote NOTES.md"


def finish(cli: str, events: list[dict[str, Any]], exit_code: int, stderr: tuple[str, ...] = ()) -> Result:
    """What the adapter of `cli` makes of a run that printed `events` (and `stderr`) and exited `exit_code`."""
    reader = ADAPTERS[cli].Reader()
    for event in events:
        reader.feed(json.dumps(event) + "\n", False)
    for line in stderr:
        reader.feed(line + "\n", True)
    result: Result = reader.finish(exit_code)
    return result


def claude_result(**fields: Any) -> dict[str, Any]:
    """Claude Code's result event, as CLI_REFERENCE shows it: a success unless `fields` say otherwise."""
    usage = {"input_tokens": 3496, "output_tokens": 82}
    event = {"type": "result", "subtype": "success", "is_error": False, "api_error_status": None, "result": ANSWER}
    return {**event, "session_id": "s-1", "total_cost_usd": 0.02, "usage": usage, **fields}


def codex_events(answer: str = ANSWER) -> list[dict[str, Any]]:
    return [
        {"type": "thread.started", "thread_id": "t-1"},
        {"type": "turn.started"},
        {"type": "item.completed", "item": {"id": "item_0", "type": "agent_message", "text": answer}},
        {"type": "turn.completed", "usage": {"input_tokens": 11062, "output_tokens": 184}},
    ]


def gemini_events(answer: str = ANSWER, *middle: dict[str, Any], **result: Any) -> list[dict[str, Any]]:
    """A stream-json run whose answer comes in two chunks and whose result is a success unless `result` says."""
    stats = {"total_tokens": 485, "input_tokens": 420, "output_tokens": 65}
    return [
        {"type": "init", "session_id": "g-1", "model": "gemini-2.5-pro"},
        *middle,
        {"type": "message", "role": "assistant", "content": answer[:6], "delta": True},
        {"type": "message", "role": "assistant", "content": answer[6:], "delta": True},
        {"type": "result", "status": "success", "stats": stats, **result},
    ]


SUCCESS = {"claude": [claude_result()], "codex": codex_events(), "gemini": gemini_events()}


@pytest.mark.parametrize("cli", ADAPTERS)
def test_exit_0_and_a_success_is_a_success(cli: str) -> None:
    result = finish(cli, SUCCESS[cli], 0)
    assert (result.ok, result.message, result.error) == (True, ANSWER, None)


@pytest.mark.parametrize("cli", ADAPTERS)
def test_a_non_zero_exit_after_reporting_success_says_so(cli: str) -> None:
    """claude recorded "Done: wrote NOTES.md" as the error, gemini "gemini ended with status 'success'",
    codex "exited 1 without a result": each read like a success, or like no answer at all."""
    result = finish(cli, SUCCESS[cli], 1)
    assert not result.ok and result.limited_until is None
    assert result.error == f"exited 1 after reporting success: {ANSWER}"


@pytest.mark.parametrize("cli", ADAPTERS)
def test_what_else_it_printed_follows_the_answer(cli: str) -> None:
    result = finish(cli, SUCCESS[cli], 2, stderr=("Error: the Stop hook failed",))
    assert result.error == f"exited 2 after reporting success: {ANSWER} | its other output: Error: the Stop hook failed"


def test_a_long_answer_is_quoted_by_its_end() -> None:
    said = "I changed many things. " * 100 + "Last: the parser is done."
    error = finish("claude", [claude_result(result=said)], 1).error or ""
    assert error.startswith("exited 1 after reporting success: …") and error.endswith("Last: the parser is done.")
    assert len(error) < 600


@pytest.mark.parametrize("cli", ADAPTERS)
def test_an_empty_answer_after_reporting_success(cli: str) -> None:
    events = {"claude": [claude_result(result="")], "codex": codex_events(""), "gemini": gemini_events("")}
    assert finish(cli, events[cli], 1).error == "exited 1 after reporting success, with an empty answer"


def test_claude_an_api_error_is_its_message_whatever_the_exit() -> None:
    failed = claude_result(is_error=True, api_error_status=400, result="API Error: 400 the request was bad")
    for code in (1, 0):
        assert finish("claude", [failed], code).error == "API Error: 400 the request was bad (HTTP 400)"


def test_claude_an_error_result_without_words_is_not_called_missing() -> None:
    """It said "exited 0 without a result", though the result was there and said is_error."""
    result = finish("claude", [claude_result(is_error=True, result="")], 0)
    assert result.error == "exited 0 after reporting an error (is_error) without a message"


def test_claude_an_error_subtype_names_itself_and_its_errors() -> None:
    turns = claude_result(subtype="error_max_turns", is_error=True, result=None, errors=["Reached maximum turns (1)"])
    assert finish("claude", [turns], 1).error == "error_max_turns: Reached maximum turns (1)"
    bare = claude_result(subtype="error_during_execution", is_error=True, result=None, errors=[])
    assert finish("claude", [bare], 0).error == "error_during_execution"


def test_claude_a_usage_limit_is_still_a_limit() -> None:
    limit = claude_result(is_error=True, api_error_status=429, result="Claude AI usage limit reached|1767225600")
    result = finish("claude", [limit], 1)
    assert (result.ok, result.limited_until) == (False, 1767225600.0)
    assert result.error == "Claude AI usage limit reached|1767225600 (HTTP 429)"


def test_codex_a_failed_turn_is_its_message_whatever_the_exit() -> None:
    failed = [*codex_events()[:2], {"type": "turn.failed", "error": {"message": "unexpected status 401 Unauthorized"}}]
    for code in (1, 0):
        assert finish("codex", failed, code).error == "unexpected status 401 Unauthorized"


def test_codex_an_error_event_explains_a_run_that_ended_without_a_turn() -> None:
    events = [{"type": "thread.started", "thread_id": "t-1"}, {"type": "error", "message": "stream disconnected"}]
    assert finish("codex", events, 1).error == "exited 1 without a result: stream disconnected"


def test_codex_a_reconnect_notice_does_not_fail_a_run() -> None:
    notice = {"type": "error", "message": "Reconnecting... 1/5"}
    events = codex_events()
    assert finish("codex", [*events[:2], notice, *events[2:]], 0).ok


def test_gemini_a_failed_tool_call_does_not_fail_the_run() -> None:
    """Its tool_result carries an error object; the run recovered, exited 0 and reported success."""
    tool = {"type": "tool_use", "tool_name": "read_file", "tool_id": "r-1", "parameters": {"file_path": "x"}}
    failed = {"type": "tool_result", "tool_id": "r-1", "status": "error"}
    failed["error"] = {"type": "file_not_found", "message": "File not found: x"}
    result = finish("gemini", gemini_events(ANSWER, tool, failed), 0)
    assert (result.ok, result.message, result.error) == (True, ANSWER, None)


def test_gemini_a_result_with_status_error_says_why() -> None:
    """A broken stream: an error event says what, then a result with status error and no error object."""
    broken = {"type": "error", "severity": "error", "message": "Invalid stream: the model returned an empty response"}
    result = finish("gemini", gemini_events("", broken, status="error"), 0)
    assert result.error == (
        "exited 0 after reporting status 'error': Invalid stream: the model returned an empty response"
    )


def test_gemini_an_error_in_the_result_is_its_message_whatever_the_exit() -> None:
    error = {"type": "ApiError", "message": "[API Error: quota (Status: 400)]"}
    for code in (144, 0):
        assert finish("gemini", gemini_events("", status="error", error=error), code).error == (
            "ApiError: [API Error: quota (Status: 400)]"
        )


def test_end_to_end_a_claude_run_that_exits_1_after_success_failed_and_says_so(project: Path, fakes: Path) -> None:
    """The fake prints a normal successful run, then exits 1 ([fake:exit=1])."""
    configure(project, retries=0)
    ok("add", "Tidy the notes [fake:exit=1]")
    assert orchestrate("run", timeout=120).returncode == 1
    failed = task(1)
    assert failed["status"] == "failed"
    assert failed["error"] == "exited 1 after reporting success: Done: Tidy the notes"
