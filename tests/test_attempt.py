"""What became of an attempt: decide() and the state machine, case by case, without processes or sleeps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrate import api, configfile, runs
from orchestrate.core.agent import Result
from orchestrate.core.attempt import BACKOFF_MAX_S, COOLING_S, Attempt, Verdict, backoff, decide
from orchestrate.core.distributor import Slot
from orchestrate.core.errors import InvalidTransition
from orchestrate.core.states import Event, Status, Stop
from orchestrate.core.store import Task

NOW = 1_000_000.0
OK = Result(True, "done")
FAILED = Result(False, "", "exited 1: boom")


def task(attempts: int = 0, max_retries: int = 2) -> Task:
    blank: dict[str, Any] = dict.fromkeys(Task._fields)
    return Task(
        **{**blank, "id": 7, "description": "x", "status": "running", "attempts": attempts, "claim": 1}
    )._replace(max_retries=max_retries)


def verdict(
    result: Result = OK,
    attempts: int = 0,
    max_retries: int = 2,
    delay: float = 10.0,
    rss_mb: float | None = None,
    **how: Any,
) -> Verdict:
    """decide() on an attempt that ended `how` (stopped=, failure=, unavailable=, timeout=)."""
    cfg = configfile.parse(
        {"task_queue": {"retry_delay_seconds": delay}, "performance": {"max_memory_mb": 4096}},
        "config.yaml",
        Path("/p"),
        Path("/p/config.yaml"),
    )
    slot = Slot("claude-1", cfg.agents[0], rss_mb=rss_mb)
    attempt = Attempt(
        task(attempts, max_retries),
        slot,
        cfg,
        None,
        {},
        None,
        how.pop("timeout", 60.0),
        Path("/p"),
        result=result,
        **how,
    )  # type: ignore[arg-type]
    return decide(attempt, NOW)


def test_a_clean_run_completes() -> None:
    assert verdict(OK) == Verdict(Event.COMPLETE)


def test_a_failure_with_retries_left_is_retried_after_a_doubling_backoff() -> None:
    first = verdict(FAILED, attempts=0)
    assert (first.event, first.error) == (Event.RETRY_LATER, "exited 1: boom")
    assert first.not_before == NOW + 10
    assert verdict(FAILED, attempts=1).not_before == NOW + 20


def test_the_backoff_is_capped_however_many_attempts_or_however_long_the_delay() -> None:
    assert backoff(10, 30) == BACKOFF_MAX_S
    assert backoff(float("inf"), 1) == BACKOFF_MAX_S
    assert backoff(10, 10_000) == BACKOFF_MAX_S  # no overflow


def test_a_failure_with_no_retries_left_fails_for_good() -> None:
    assert verdict(FAILED, attempts=2, max_retries=2) == Verdict(Event.FAIL, "exited 1: boom")
    assert verdict(FAILED, max_retries=0).event is Event.FAIL


def test_a_failed_check_fails_an_agent_that_succeeded() -> None:
    failure = "verify `pytest` failed (exit 1):\n1 failed"
    assert verdict(OK, max_retries=0, failure=failure) == Verdict(Event.FAIL, failure)


def test_a_rate_limit_cools_the_agent_and_spends_nothing() -> None:
    named = verdict(FAILED._replace(limited_until=NOW + 300))
    assert named == Verdict(Event.REQUEUE, "exited 1: boom", cooling_until=NOW + 300)
    assert verdict(FAILED._replace(limited_until=0.0)).cooling_until == NOW + COOLING_S
    assert verdict(FAILED._replace(limited_until=NOW - 50)).cooling_until == NOW + 1  # a reset in the past


def test_a_limit_that_names_no_reset_cools_longer_each_time_in_a_row_up_to_an_hour() -> None:
    unnamed = FAILED._replace(limited_until=0.0)
    cooling = [verdict(unnamed, limits=n).cooling_until for n in range(8)]
    assert cooling[:4] == [NOW + COOLING_S * 2**n for n in range(4)]  # 60 s, 2 min, 4 min, 8 min
    assert cooling[-1] == NOW + BACKOFF_MAX_S  # a terminal quota costs a handful of runs a day
    named = verdict(FAILED._replace(limited_until=NOW + 300), limits=5)
    assert named.cooling_until == NOW + 300  # a reset the CLI named is kept as named


def test_refused_credentials_requeue_unspent_with_what_the_cli_said() -> None:
    refused = Result(False, "", "Invalid API key: log in again", unauthorized=True)
    v = verdict(refused, unavailable=True)  # the pipeline marks the agent unavailable when the CLI says so
    assert v == Verdict(Event.REQUEUE, "Invalid API key: log in again")


def test_a_limit_reported_by_a_run_that_was_also_stopped_or_failed_a_check_is_that_outcome() -> None:
    limited = FAILED._replace(limited_until=0.0)
    assert verdict(limited, stopped=Stop.TIMEOUT, timeout=60) == Verdict(
        Event.RETRY_LATER, "timed out after 60 s", not_before=NOW + 10
    )
    assert verdict(limited, failure="setup failed").error == "setup failed"


def test_a_timeout_is_a_failed_attempt_that_says_so() -> None:
    v = verdict(OK, stopped=Stop.TIMEOUT, timeout=90)
    assert (v.event, v.error, v.cooling_until) == (Event.RETRY_LATER, "timed out after 90 s", None)


@pytest.mark.parametrize("stop", [Stop.MEMORY, Stop.IDLE])
def test_a_watchdog_stop_is_a_failed_attempt_that_says_why(stop: Stop) -> None:
    why = "used 5000 MB, over performance.max_memory_mb (4096)" if stop is Stop.MEMORY else "no output for 900 s"
    v = verdict(OK, max_retries=0, stopped=stop, failure=why)  # the watchdog fails the attempt as it stops it
    assert (v.event, v.error) == (Event.FAIL, why)
    assert verdict(OK, stopped=stop).event is Event.RETRY_LATER  # stopped: never completed, whatever it said


def test_a_stop_requeues_without_spending_an_attempt() -> None:
    assert verdict(FAILED, stopped=Stop.STOPPED) == Verdict(Event.REQUEUE)


def test_a_cancel_records_nothing() -> None:
    assert verdict(OK, stopped=Stop.CANCELLED) == Verdict(None)


def test_an_agent_that_cannot_start_requeues_unspent() -> None:
    v = verdict(Result(False, "", "cannot run 'claude': No such file"), unavailable=True)
    assert (v.event, v.error) == (Event.REQUEUE, "cannot run 'claude': No such file")


def test_orchestrate_failing_is_a_spent_attempt_marked_as_its_error() -> None:
    v = verdict(FAILED, max_retries=0, failure="orchestrate could not run it: OSError()")
    assert (v.event, v.error) == (Event.FAIL, "orchestrate could not run it: OSError()")


@pytest.mark.parametrize(
    ("status", "event", "target"),
    [
        ("pending", Event.CLAIM, Status.RUNNING),
        ("running", Event.COMPLETE, Status.COMPLETED),
        ("running", Event.RETRY_LATER, Status.PENDING),
        ("running", Event.FAIL, Status.FAILED),
        ("running", Event.REQUEUE, Status.PENDING),
        ("pending", Event.CANCEL, Status.CANCELLED),
        ("running", Event.CANCEL, Status.CANCELLED),
        ("failed", Event.RETRY, Status.PENDING),
        ("cancelled", Event.RETRY, Status.PENDING),
    ],
)
def test_each_transition_leads_where_the_design_says(status: str, event: Event, target: Status) -> None:
    assert api.change(status, event) is target


@pytest.mark.parametrize(
    ("status", "event"),
    [("completed", Event.CANCEL), ("running", Event.RETRY), ("pending", Event.RETRY), ("cancelled", Event.CLAIM)],
)
def test_a_transition_the_state_does_not_allow_is_refused_in_words(status: str, event: Event) -> None:
    with pytest.raises(InvalidTransition, match=f"task_007 is {status}; only .* tasks can be"):
        api.change(status, event, "task_007")


def outcome_of(result: Result = OK, **how: Any) -> str:
    """runs.outcome() of an attempt that ended `how`, once decided."""
    cfg = configfile.parse({}, "config.yaml", Path("/p"), Path("/p/config.yaml"))
    broke = how.pop("broke", False)
    attempt = Attempt(
        task(), Slot("claude-1", cfg.agents[0]), cfg, None, {}, None, 60.0, Path("/p"), result=result, **how
    )  # type: ignore[arg-type]
    attempt.broke = broke
    attempt.verdict = decide(attempt, NOW)
    return runs.outcome(attempt)


def test_each_way_a_run_ends_has_its_outcome() -> None:
    assert outcome_of(OK) == "completed"
    assert outcome_of(FAILED) == "failed"
    assert outcome_of(OK, failure="verify `pytest` failed") == "failed"
    assert outcome_of(OK, failure="orchestrate could not run it: boom", broke=True) == "error"
    assert outcome_of(FAILED._replace(limited_until=0.0)) == "rate_limited"
    assert outcome_of(Result(False, "", "Invalid API key", unauthorized=True), unavailable=True) == "auth"
    assert outcome_of(Result(False, "", "cannot run 'claude'"), unavailable=True) == "error"
    for stop in Stop:
        assert outcome_of(OK, stopped=stop) == stop.value
    assert set(runs.OUTCOMES) >= {outcome_of(OK, stopped=stop) for stop in Stop}
