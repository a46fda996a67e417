"""The run history: every run of an agent on the record, and retries that continue the session
the last run left.

Each run gets a row in `runs` (the queue's m004), written in the transaction that records its
task, with the task's cost and tokens and the queue's spending added up there: nothing is
overwritten, and a crash can never count a run's cost twice or not at all. A cancelled run, whose
task the head no longer records, still gets its row.

A retry on an agent whose CLI can resume (`resumes` in its adapter) continues the session the
previous run left, told only what went wrong; a CLI that refuses the session is run afresh by the
attempt, without spending one. `resume: false` on an agent entry turns this off."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from orchestrate.configfile import RunSettings
from orchestrate.core.agent import ERROR_TAIL
from orchestrate.core.extension import Extension
from orchestrate.core.states import Event

if TYPE_CHECKING:
    from orchestrate.core.attempt import Attempt
    from orchestrate.core.config import Config
    from orchestrate.core.head import Head

# How a run ended; the first five are also the reasons the head stops a run (core/states.py's Stop).
OUTCOMES = ("completed", "failed", "timeout", "idle", "memory", "stopped", "cancelled", "rate_limited", "auth", "error")
COLUMNS = (
    "claim", "agent", "agent_type", "started_at", "finished_at", "outcome", "exit_code", "error",
    "cost_usd", "input_tokens", "output_tokens", "session_id", "log_start", "log_end",
)  # fmt: skip
ADD_RUN = f"""INSERT INTO runs (task_id, n, {", ".join(COLUMNS)})
    SELECT id, (SELECT count(*) + 1 FROM runs r WHERE r.task_id = tasks.id), {", ".join("?" * len(COLUMNS))}
    FROM tasks WHERE id = ?"""  # a task deleted meanwhile keeps no runs
# NULL means "not reported": a sum stays NULL until some run reports a figure.
ADD_UP = """UPDATE tasks SET cost_usd = coalesce(cost_usd + ?, cost_usd, ?),
    input_tokens = coalesce(input_tokens + ?, input_tokens, ?),
    output_tokens = coalesce(output_tokens + ?, output_tokens, ?) WHERE id = ?"""  # each figure twice
SPEND = "UPDATE spending SET cost_usd = cost_usd + ?"


def add_up(task_id: int, *figures: float | int | None) -> tuple[str, tuple[float | int | None, ...]]:
    """ADD_UP for a run's cost, input and output tokens, each figure given twice (it has no numbered parameters)."""
    return ADD_UP, (*(f for f in figures for _ in range(2)), task_id)


LAST_RUN = "SELECT agent_type, session_id, error FROM runs WHERE task_id = ? ORDER BY n DESC LIMIT 1"
RESUMED = """\
# Task {name}: your last attempt did not succeed

{went_wrong}

Continue from where you left off: put right what went wrong, and finish the task. When you are
done, reply with a short summary of what you did and what the next person should know."""


def settings(cfg: Config) -> RunSettings:
    found: RunSettings = cfg.features.get("runs", RunSettings())
    return found


def outcome(attempt: Attempt) -> str:
    """How a decided run ended, for its row: one of OUTCOMES."""
    verdict, stopped = attempt.verdict, attempt.stopped
    assert verdict is not None
    if stopped is not None:
        return str(stopped)
    if attempt.unavailable:
        return "auth" if attempt.result.unauthorized else "error"
    if verdict.cooling_until is not None:
        return "rate_limited"
    if verdict.event is Event.COMPLETE:
        return "completed"
    return "error" if attempt.broke else "failed"


def log_size(attempt: Attempt) -> int | None:
    try:
        return os.stat(attempt.log.path).st_size
    except OSError:
        return None


class Runs(Extension):
    def __init__(self, settings: RunSettings) -> None:
        self.settings = settings
        self.log_start: dict[str, int | None] = {}  # slot id: where its attempt's part of the log begins

    async def started(self, head: Head) -> None:
        self.head = head

    async def workdir(self, attempt: Attempt) -> None:
        self.log_start[attempt.slot.id] = log_size(attempt)  # just after the attempt's header line

    async def before(self, attempt: Attempt) -> None:
        task, agent = attempt.task, attempt.slot.agent
        attempt.budget = task.max_cost_usd or self.settings.budget(agent.name)
        adapter = self.head.adapters.get(agent.type)
        if task.claim < 2 or not self.settings.resumes(agent.name) or not getattr(adapter, "resumes", False):
            return
        last = await self.head.queue.read(LAST_RUN, task.id)
        if last and last[0]["agent_type"] == agent.type and last[0]["session_id"]:  # it left one this CLI can take
            went_wrong = (last[0]["error"] or "it was interrupted before it finished")[-ERROR_TAIL:]
            attempt.session = last[0]["session_id"]
            attempt.prompt = RESUMED.format(name=task.name, went_wrong=went_wrong)

    async def record(self, attempt: Attempt) -> None:
        task, result, verdict = attempt.task, attempt.result, attempt.verdict
        assert verdict is not None
        row = (
            task.claim, attempt.slot.id, attempt.slot.agent.type, task.started_at, self.head.now(), outcome(attempt),
            attempt.exit_code, verdict.error, result.cost_usd, result.input_tokens, result.output_tokens,
            result.session_id, self.log_start.get(attempt.slot.id), log_size(attempt),
        )  # fmt: skip
        attempt.writes.append((ADD_RUN, (*row, task.id)))
        figures = (result.cost_usd, result.input_tokens, result.output_tokens)
        if any(figure is not None for figure in figures):  # a command reports none: its sums stay as they are
            attempt.writes.append(add_up(task.id, *figures))
        if result.cost_usd:
            attempt.writes.append((SPEND, (result.cost_usd,)))
