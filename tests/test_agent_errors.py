"""What a failed run's error says: each adapter's Reader.finish, case by case, where the exit status
and the CLI's structured output disagree (pure logic), and one such run end to end with a fake CLI;
then the limits (and their reset times) and the refused credentials each CLI's structured output
reports, and the error events a failed run quotes. tests/test_limits.py runs those end to end."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import orchestrate
from test_head import configure, ok, task

from orchestrate.agents import claude, codex, gemini, retry_at
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
    failed = [*codex_events()[:2], {"type": "turn.failed", "error": {"message": "unexpected status 400 Bad Request"}}]
    for code in (1, 0):
        assert finish("codex", failed, code).error == "unexpected status 400 Bad Request"


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


# --- Limits and refused credentials, from the CLIs' structured output --------------------------------

NOW = 1_800_000_000.0  # the clock a reader is given at finish


def finish_at(cli: str, events: list[dict[str, Any]], exit_code: int, stderr: tuple[str, ...] = ()) -> Result:
    """As `finish`, with the reader's clock at NOW."""
    reader = ADAPTERS[cli].Reader()
    for event in events:
        reader.feed(json.dumps(event) + "\n", False)
    for line in stderr:
        reader.feed(line + "\n", True)
    result: Result = reader.finish(exit_code, now=NOW)
    return result


def test_retry_at_is_now_plus_the_named_delay_else_no_time() -> None:
    assert retry_at(37.0, NOW) == NOW + 37
    assert retry_at(None, NOW) == retry_at(0, NOW) == retry_at(-5, NOW) == 0.0


def api_retry(status: int | None, delay_ms: float, error: str = "rate_limit", attempt: int = 1) -> dict[str, Any]:
    """Claude Code's event before it retries an API call: the status it got and how long it waits."""
    event = {"type": "system", "subtype": "api_retry", "attempt": attempt, "max_retries": 10}
    return {**event, "retry_delay_ms": delay_ms, "error_status": status, "error": error, "session_id": "s-1"}


CLAUDE_429 = claude_result(is_error=True, api_error_status=429, result="API Error: Request rejected (429) · slow down")


def test_claude_a_429_resets_after_the_delay_its_last_retry_named() -> None:
    """It was cooled a fixed 60 s: the retry-after claude printed (retry_delay_ms) was not read."""
    events = [api_retry(429, 20_000), api_retry(429, 37_000, attempt=2), CLAUDE_429]
    result = finish_at("claude", events, 1)
    assert (result.ok, result.limited_until, result.unauthorized) == (False, NOW + 37, False)
    assert result.error == "API Error: Request rejected (429) · slow down (HTTP 429)"


def test_claude_a_429_without_a_429_retry_names_no_time() -> None:
    assert finish_at("claude", [CLAUDE_429], 1).limited_until == 0.0
    overloaded = api_retry(529, 8_000, "server_error")  # a delay for another status is not the limit's
    assert finish_at("claude", [overloaded, CLAUDE_429], 1).limited_until == 0.0


def test_claude_a_run_that_got_over_its_429_retries_is_a_success() -> None:
    result = finish_at("claude", [api_retry(429, 5_000), claude_result()], 0)
    assert (result.ok, result.limited_until) == (True, None)


def test_claude_a_run_that_ended_without_a_result_after_429_retries_is_limited() -> None:
    result = finish_at("claude", [api_retry(429, 12_000)], 1)
    assert result.limited_until == NOW + 12
    assert result.error == "exited 1 without a result; its last API retry was for HTTP 429 (rate_limit)"


CLAUDE_FIX = "log in with `claude /login` or set ANTHROPIC_API_KEY (this agent's env: in config.yaml)"


@pytest.mark.parametrize(
    ("said", "status"),
    [
        ("Invalid API key · Fix external API key", 401),
        ("API Error: 403 your organization has been disabled", 403),
        ("Not logged in · Please run /login", None),
    ],
)
def test_claude_refused_credentials_are_unauthorized_and_say_what_to_fix(said: str, status: int | None) -> None:
    events = [api_retry(status, 1_000, "authentication_failed")] if status else []
    result = finish_at("claude", [*events, claude_result(is_error=True, api_error_status=status, result=said)], 1)
    assert (result.ok, result.unauthorized, result.limited_until) == (False, True, None)
    assert result.error == (f"{said} (HTTP {status}): {CLAUDE_FIX}" if status else f"{said}: {CLAUDE_FIX}")


def test_claude_a_run_that_ended_on_401_retries_is_unauthorized() -> None:
    result = finish_at("claude", [api_retry(401, 4_000, "authentication_failed")], 1)
    assert result.unauthorized and result.limited_until is None
    assert result.error == (
        f"exited 1 without a result; its last API retry was for HTTP 401 (authentication_failed): {CLAUDE_FIX}"
    )


def test_claude_other_api_errors_are_neither_limits_nor_refusals() -> None:
    for status in (400, 500, 529):
        failed = claude_result(is_error=True, api_error_status=status, result=f"API Error: {status} no")
        result = finish_at("claude", [api_retry(status, 2_000, "server_error"), failed], 1)
        assert (result.unauthorized, result.limited_until) == (False, None)


def codex_failed(message: str) -> list[dict[str, Any]]:
    """A codex run whose turn failed with `message`, after the error event codex prints with it."""
    return [
        *codex_events()[:2],
        {"type": "error", "message": message},
        {"type": "turn.failed", "error": {"message": message}},
    ]


CODEX_FIX = "log in with `codex login` or set OPENAI_API_KEY (this agent's env: in config.yaml)"


@pytest.mark.parametrize(
    "said",
    [
        "unexpected status 401 Unauthorized: Missing bearer or basic authentication in header",
        "unexpected status 403 Forbidden: this key cannot use the project",
        "exceeded retry limit, last status: 401 Unauthorized, request id: req_1",
    ],
)
def test_codex_refused_credentials_are_unauthorized_and_say_what_to_fix(said: str) -> None:
    result = finish_at("codex", codex_failed(said), 1)
    assert (result.unauthorized, result.limited_until) == (True, None)
    assert result.error == f"{said}: {CODEX_FIX}"


@pytest.mark.parametrize(
    "said",
    [
        "exceeded retry limit, last status: 429 Too Many Requests",
        "unexpected status 429 Too Many Requests: Rate limit reached for gpt-5 on tokens per min",
        "Quota exceeded. Check your plan and billing details.",
        "You've hit your usage limit. Upgrade to Pro or try again in 2 hours 13 minutes.",
    ],
)
def test_codex_limits_name_no_time(said: str) -> None:
    """Codex prints no retry delay of its own: the core cools the agent its default time."""
    result = finish_at("codex", codex_failed(said), 1)
    assert (result.limited_until, result.unauthorized, result.error) == (0.0, False, said)


def test_codex_words_in_an_api_error_body_are_not_a_limit() -> None:
    """The status codex names decides: a 400 whose body mentions a rate limit is an ordinary failure."""
    said = 'unexpected status 400 Bad Request: {"error":{"message":"rate limit settings are invalid"}}'
    result = finish_at("codex", codex_failed(said), 1)
    assert (result.limited_until, result.unauthorized, result.error) == (None, False, said)


def test_codex_an_error_event_decides_a_run_that_died_before_its_turn_failed() -> None:
    said = "unexpected status 401 Unauthorized: token expired"
    events = [{"type": "thread.started", "thread_id": "t-1"}, {"type": "error", "message": said}]
    result = finish_at("codex", events, 1)
    assert result.unauthorized and result.error == f"exited 1 without a result: {said}: {CODEX_FIX}"


def google_429(retry_delay: str | None, quota: str = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier") -> str:
    """The Gemini API's own 429 body, as gemini's error message quotes it."""
    details: list[dict[str, Any]] = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaId": quota}]}
    ]
    if retry_delay is not None:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay})
    body = {
        "code": 429,
        "message": "You exceeded your current quota. Please retry in 37.231s.",
        "status": "RESOURCE_EXHAUSTED",
    }
    return "[API Error: got status: 429 Too Many Requests. " + json.dumps({"error": {**body, "details": details}}) + "]"


def gemini_failed(kind: str, message: str, **error: Any) -> list[dict[str, Any]]:
    return gemini_events("", status="error", error={"type": kind, "message": message, **error})


def test_gemini_a_quota_error_resets_after_its_retry_delay() -> None:
    """It was cooled a fixed 60 s: the RetryInfo in the API's error was not read."""
    result = finish_at("gemini", gemini_failed("RetryableQuotaError", google_429("37s")), 173)
    assert (result.limited_until, result.unauthorized) == (NOW + 37, False)
    assert result.error == "RetryableQuotaError: " + google_429("37s")


def test_gemini_an_api_error_429_with_a_fractional_delay() -> None:
    result = finish_at("gemini", gemini_failed("ApiError", google_429("2.5s")), 173)
    assert result.limited_until == NOW + 2.5


def test_gemini_a_daily_quota_names_no_short_retry() -> None:
    """Google's daily-quota error still says "retry in 37s"; gemini calls it terminal: no reset time."""
    said = "You exceeded your current quota. Please retry in 37.231s."
    assert finish_at("gemini", gemini_failed("TerminalQuotaError", said), 173).limited_until == 0.0
    quoted = google_429("37s", quota="GenerateRequestsPerDayPerProjectPerModel-FreeTier")
    assert finish_at("gemini", gemini_failed("TerminalQuotaError", quoted), 173).limited_until == 0.0


def test_gemini_a_429_without_a_delay_names_no_time() -> None:
    assert finish_at("gemini", gemini_failed("ApiError", google_429(None)), 173).limited_until == 0.0
    assert finish_at("gemini", [{"type": "init", "session_id": "g-1"}], 173).limited_until == 0.0  # only the exit
    assert finish_at("gemini", gemini_failed("Error", "[API Error: busy]", code=429), 1).limited_until == 0.0


GEMINI_FIX = "set GEMINI_API_KEY (this agent's env: in config.yaml), or choose how to log in by running `gemini` once"
NO_AUTH = "Please set an Auth method in your settings.json or specify one of the following environment variables"


@pytest.mark.parametrize(
    ("events", "exit_code", "said"),
    [
        ([], 41, f"exited 41 without a result: {NO_AUTH}"),
        (gemini_failed("FatalAuthenticationError", NO_AUTH), 41, f"FatalAuthenticationError: {NO_AUTH}"),
        (gemini_failed("ApiError", "[API Error: unauthorized (Status: 401)]"), 145, None),
        (gemini_failed("ApiError", "[API Error: forbidden (Status: 403)]"), 147, None),
        (gemini_failed("ApiError", "[API Error: API key not valid. Please pass a valid API key.]"), 144, None),
        (gemini_failed("Error", "[API Error: denied]", code=403), 1, None),
    ],
)
def test_gemini_refused_credentials_are_unauthorized_and_say_what_to_fix(
    events: list[dict[str, Any]], exit_code: int, said: str | None
) -> None:
    result = finish_at("gemini", events, exit_code, stderr=(NO_AUTH,) if not events else ())
    assert (result.ok, result.unauthorized, result.limited_until) == (False, True, None)
    if said is None:
        said = "{type}: {message}".format(**events[-1]["error"])
    assert result.error == f"{said}: {GEMINI_FIX}"


def test_gemini_an_api_key_refused_in_the_apis_own_words_is_unauthorized() -> None:
    body = {"code": 400, "message": "bad key", "status": "INVALID_ARGUMENT"}
    body["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]
    quoted = "[API Error: got status: 400 Bad Request. " + json.dumps({"error": body}) + "]"
    assert finish_at("gemini", gemini_failed("ApiError", quoted), 144).unauthorized


def test_gemini_other_errors_are_neither_limits_nor_refusals() -> None:
    for code in (144, 244, 1):
        result = finish_at("gemini", gemini_failed("ApiError", f"[API Error: no (Status: {code})]"), code)
        assert (result.unauthorized, result.limited_until) == (False, None)


# --- gemini's error events reach a failed run's error ------------------------------------------------


def test_gemini_an_error_event_outlasts_a_noisy_stderr() -> None:
    """A dropped stream: the event said why, then twenty-five stderr lines pushed it out of the error."""
    dropped = {"type": "error", "severity": "error", "message": "Connection reset by peer while streaming"}
    noise = tuple(f"[DEBUG] retrying fetch {n}" for n in range(25))
    result = finish_at("gemini", [{"type": "init", "session_id": "g-1"}, dropped], 1, stderr=noise)
    error = result.error or ""
    assert error.startswith("exited 1 without a result: Connection reset by peer while streaming | its other output: ")
    assert error.endswith("[DEBUG] retrying fetch 24")


def test_gemini_the_error_events_follow_the_results_error() -> None:
    turns = {"type": "error", "severity": "error", "message": "Maximum session turns exceeded"}
    events = gemini_events("", turns, status="error", error={"type": "FatalTurnLimitedError", "message": "Reached max"})
    assert (
        finish_at("gemini", events, 53).error == "FatalTurnLimitedError: Reached max | Maximum session turns exceeded"
    )


def test_gemini_a_result_with_status_error_quotes_every_error_event() -> None:
    warning = {"type": "error", "severity": "warning", "message": "Loop detected, stopping execution"}
    broken = {"type": "error", "severity": "error", "message": "Invalid stream: empty response"}
    result = finish_at("gemini", gemini_events("", warning, broken, status="error"), 0, stderr=("[WARN] slow",))
    assert result.error == (
        "exited 0 after reporting status 'error': Loop detected, stopping execution | Invalid stream: empty response"
        " | its other output: [WARN] slow"
    )


@pytest.mark.parametrize("cli", ["codex", "gemini"])
def test_error_events_of_a_run_that_reported_success_are_among_its_other_output(cli: str) -> None:
    notice = {"type": "error", "severity": "warning", "message": "Reconnecting... 1/5"}
    events = [*SUCCESS[cli][:1], notice, *SUCCESS[cli][1:]]
    error = finish(cli, events, 1, stderr=("Error: the Stop hook failed",)).error
    assert (
        error
        == f"exited 1 after reporting success: {ANSWER} | its other output: Reconnecting... 1/5 | Error: the Stop hook failed"
    )
