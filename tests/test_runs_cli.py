"""The run history as the commands and the dashboard show it: `show` lists a task's runs, `logs
--attempt` prints one run's part of the log, `status` and /metrics total what every run cost, and
the spending cap holds claiming until `retry` counts afresh. End to end through the installed
command, with real heads running `command` agents (small scripts) or the fake claude, and with
runs written into the queue the way the head writes them where a cost is needed."""

from __future__ import annotations

import json
import re
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import test_dashboard
from conftest import orchestrate, wait_until
from test_cli import one_line_error
from test_dashboard import Served, api, parse_prometheus, request
from test_runs import FLAKY

from orchestrate import runs

RUN_KEYS = {
    "n", "agent", "agent_type", "claim", "started_at", "finished_at", "outcome", "exit_code", "error",
    "cost_usd", "input_tokens", "output_tokens", "session_id",
}  # fmt: skip
serve = test_dashboard.serve  # the fixture: `orchestrate dashboard` on a free port
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")


def configure(project: Path, command: str = "cat", queue: str = "") -> None:
    (project / "config.yaml").write_text(
        "agents:\n"
        "  worker:\n"
        "    type: command\n"
        f"    command: {json.dumps(command)}\n"
        "task_queue:\n"
        "  max_retries: 1\n"
        "  retry_delay_seconds: 0\n"
        "  kill_grace_seconds: 1\n"
        f"{queue}"
    )


def ok(*args: str) -> str:
    done = orchestrate(*args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def as_json(*args: str) -> Any:
    return json.loads(ok(*args, "--json"))


def record_run(project: Path, task_id: int, cost: float | None, agent: str = "worker-1", **fields: Any) -> None:
    """Write a run into the queue with the head's own statements (orchestrate/runs.py): its row,
    the task's sums and the queue's total, in one transaction."""
    tokens = fields.pop("tokens", (1000, 50))
    now = time.time()
    values = {
        "claim": 1, "agent": agent, "agent_type": "claude", "started_at": now - 65, "finished_at": now - 2,
        "outcome": "failed", "exit_code": 1, "error": "claude exited 1: it broke", "cost_usd": cost,
        "input_tokens": tokens[0], "output_tokens": tokens[1], "session_id": "s-1", "log_start": None,
        "log_end": None,
    } | fields  # fmt: skip
    conn = sqlite3.connect(project / "tasks.db")
    try:
        with conn:
            conn.execute(runs.ADD_RUN, (*(values[c] for c in runs.COLUMNS), task_id))
            conn.execute(*runs.add_up(task_id, cost, *tokens))
            if cost:
                conn.execute(runs.SPEND, (cost,))
    finally:
        conn.close()


def set_failed(project: Path, task_id: int) -> None:
    conn = sqlite3.connect(project / "tasks.db")
    with conn:
        conn.execute(
            "UPDATE tasks SET status = 'failed', attempts = 2, finished_at = ? WHERE id = ?", (time.time(), task_id)
        )
    conn.close()


def test_a_task_retried_after_a_failure_shows_both_runs_and_each_ones_log(project: Path) -> None:
    (project / "flaky.py").write_text(FLAKY)
    configure(project, f"{sys.executable} {project / 'flaky.py'} {project / 'count'}")
    ok("add", "say hello")
    assert orchestrate("run", timeout=120).returncode == 0
    shown = as_json("show", "1")
    assert shown["status"] == "completed" and shown["attempts"] == 2
    first, second = shown["runs"]
    assert set(first) == set(second) == RUN_KEYS
    assert (first["n"], first["claim"], first["outcome"], first["exit_code"]) == (1, 1, "failed", 1)
    assert (second["n"], second["claim"], second["outcome"], second["exit_code"]) == (2, 2, "completed", 0)
    assert first["agent"] == second["agent"] == "worker-1" and first["agent_type"] == "command"
    assert "run 1 says hello" in first["error"] and second["error"] is None
    assert all(ISO.fullmatch(r[k]) for r in (first, second) for k in ("started_at", "finished_at"))
    for key in ("cost_usd", "input_tokens", "output_tokens", "session_id"):  # a command agent reports none
        assert first[key] is second[key] is None, key
    assert shown["cost_usd"] is None and shown["session_id"] is None
    lines = ok("show", "1").splitlines()
    table = lines[lines.index("") + 1 :]
    assert table[0].split() == ["RUN", "AGENT", "STARTED", "TOOK", "OUTCOME", "EXIT", "COST", "TOKENS", "ERROR"]
    assert table[1].split()[:2] == ["1", "worker-1"] and table[1].split()[4:8] == ["failed", "1", "-", "-"]
    assert "exited 1: run 1" in table[1]  # the error, shortened to fit
    assert table[2].split()[:2] == ["2", "worker-1"] and table[2].split()[4:] == ["completed", "0", "-", "-"]

    one, two, whole = ok("logs", "1", "--attempt", "1"), ok("logs", "1", "-a", "2"), ok("logs", "1")
    assert "run 1 says hello" in one and "run 2" not in one
    assert "run 2 says hello" in two and "run 1" not in two
    assert whole.index(one) < whole.index(two)  # each is its run's part of the whole log, in order


def test_logs_attempt_refuses_a_run_it_cannot_print(project: Path) -> None:
    configure(project)
    ok("add", "one")
    ok("add", "never ran")
    ok("cancel", "2")
    assert orchestrate("run", timeout=120).returncode == 1  # task_002 did not complete
    one_line_error(orchestrate("logs", "1", "--attempt", "3"), 1, "task_001 has no run 3", "it has run 1 only")
    one_line_error(orchestrate("logs", "1", "--attempt", "1", "--follow"), 2, "--attempt", "--follow")
    one_line_error(orchestrate("logs", "1", "--attempt", "0"), 2, "--attempt")
    one_line_error(orchestrate("logs", "1", "--attempt", "first"), 2, "--attempt")
    one_line_error(orchestrate("logs", "task_009", "--attempt", "1"), 1, "task_009 does not exist")
    ok("add", "recorded by hand")
    record_run(project, 3, 0.01)  # a run on record without its place in the log
    one_line_error(orchestrate("logs", "3", "--attempt", "1"), 1, "run 1 has no place in the log", "logs task_003")
    one_line_error(orchestrate("logs", "2", "--attempt", "1"), 1, "task_002 has no run 1", "no run has ended yet")


def test_a_tasks_cost_is_the_sum_over_its_runs_and_status_says_the_total(project: Path) -> None:
    configure(project)
    ok("add", "expensive")
    ok("add", "cheap")
    record_run(project, 1, 0.0125, tokens=(1000, 50))
    record_run(project, 1, 0.0300, claim=2, outcome="completed", exit_code=0, error=None, tokens=(2000, 70))
    record_run(project, 2, 0.0075, agent="worker-2")
    shown = as_json("show", "1")
    assert [r["cost_usd"] for r in shown["runs"]] == [0.0125, 0.03]
    assert shown["cost_usd"] == pytest.approx(0.0425)
    assert (shown["input_tokens"], shown["output_tokens"]) == (3000, 120)
    assert as_json("tasks")[0]["cost_usd"] == pytest.approx(0.0425)
    text = ok("show", "1")
    assert "  cost:        $0.0425 over 2 runs" in text and "  tokens:      3000 in, 120 out" in text
    table = text.splitlines()[-2:]
    assert table[0].split()[:2] == ["1", "worker-1"] and table[0].split()[3:8] == [
        "1m03s",
        "failed",
        "1",
        "$0.0125",
        "1000/50",
    ]
    assert "claude exited 1: it" in table[0]  # the error, shortened to fit
    assert table[1].split()[3:8] == ["1m03s", "completed", "0", "$0.03", "2000/70"]
    assert as_json("status")["spending"] == {"cost_usd": pytest.approx(0.05), "max_cost_usd": None, "held": False}
    lines = ok("status").splitlines()
    assert "spent    $0.05 over all runs" in lines and not any(line.startswith("held") for line in lines)


def test_the_spending_cap_holds_claiming_until_retry_counts_afresh(project: Path) -> None:
    configure(project, queue="  max_cost_usd: 0.04\n")
    ok("add", "failed twice")
    record_run(project, 1, 0.02)
    record_run(project, 1, 0.03, claim=2)
    set_failed(project, 1)
    lines = ok("status").splitlines()
    assert "spent    $0.05 over all runs ($0.05 of the $0.04 cap, task_queue.max_cost_usd)" in lines
    held = "held     claiming is held: spent $0.05 of task_queue.max_cost_usd ($0.04); raise it in config.yaml"
    assert any(line.startswith(held) for line in lines), lines
    assert as_json("status")["spending"] == {"cost_usd": pytest.approx(0.05), "max_cost_usd": 0.04, "held": True}
    retried = ok("retry", "1")
    assert "task_001 is pending again" in retried and "counts afresh" in retried
    assert as_json("status")["spending"] == {"cost_usd": pytest.approx(0.05), "max_cost_usd": 0.04, "held": False}
    lines = ok("status").splitlines()
    assert "spent    $0.05 over all runs ($0.00 of the $0.04 cap, task_queue.max_cost_usd)" in lines
    assert not any(line.startswith("held") for line in lines)
    shown = as_json("show", "1")
    assert [r["n"] for r in shown["runs"]] == [1, 2] and shown["cost_usd"] == pytest.approx(0.05)  # history kept
    one_line_error(orchestrate("retry", "1"), 1, "task_001")  # pending and not waiting: nothing changes
    assert as_json("status")["spending"]["held"] is False


def test_a_head_whose_runs_reach_the_cap_holds_claiming(project: Path, fakes: Path) -> None:
    (project / "config.yaml").write_text(
        "agents:\n  claude:\n    env: {IS_SANDBOX: '1'}\n"
        "task_queue:\n  max_retries: 0\n  retry_delay_seconds: 0\n  max_cost_usd: 0.000001\n"
    )
    ok("add", "the first costs more than the cap")
    ok("start")
    try:
        wait_until(lambda: as_json("show", "1")["status"] == "completed", timeout=60, message="task_001 to complete")
        [run] = as_json("show", "1")["runs"]
        assert run["cost_usd"] > 0 and run["input_tokens"] > 0 and run["session_id"]
        spending = as_json("status")["spending"]
        assert spending == {"cost_usd": pytest.approx(run["cost_usd"]), "max_cost_usd": 0.000001, "held": True}
        assert any(line.startswith("held     claiming is held: spent $") for line in ok("status").splitlines())
        ok("add", "the second waits")
        beat = as_json("status")["head"]["heartbeat_at"]
        wait_until(lambda: as_json("status")["head"]["heartbeat_at"] != beat, message="a heartbeat")
        assert as_json("show", "2")["status"] == "pending"  # a free agent, a due task: claiming is held
    finally:
        ok("stop")


def test_metrics_count_every_runs_cost_and_the_dashboard_shows_runs(
    project: Path, serve: Callable[..., Served]
) -> None:
    configure(project)
    ok("add", "retried")
    record_run(project, 1, 0.02)
    record_run(project, 1, 0.03, claim=2)
    set_failed(project, 1)
    url = serve().url
    samples, types = parse_prometheus(request(url, "/metrics").body.decode())
    assert types["orchestrate_cost_usd_total"] == "counter"
    assert samples["orchestrate_cost_usd_total"] == pytest.approx(0.05)  # both runs', not the latest's
    shown = api(url, "/api/status")
    assert shown["cost_usd"] == pytest.approx(0.05) and shown["spending"]["held"] is False
    assert shown["held_because"] is None
    assert api(url, "/api/tasks/1") == as_json("show", "1") and len(api(url, "/api/tasks/1")["runs"]) == 2
    ok("retry", "1")  # a fresh count for the cap; the counter never goes down
    samples, _ = parse_prometheus(request(url, "/metrics").body.decode())
    assert samples["orchestrate_cost_usd_total"] == pytest.approx(0.05)


def test_each_agents_cost_is_what_its_runs_cost_across_a_restart(project: Path, serve: Callable[..., Served]) -> None:
    configure(project)
    ok("add", "ran under an earlier head")
    record_run(project, 1, 0.02)
    record_run(project, 1, 0.03, claim=2, outcome="completed", exit_code=0, error=None)
    ok("start")
    try:
        url = serve().url
        shown = wait_until(lambda: (s := api(url, "/api/status"))["agents"] and s, message="the head's agents")
        [agent] = shown["agents"]
        assert agent["id"] == "worker-1" and agent["cost_usd"] == pytest.approx(0.05) == shown["cost_usd"]
        assert "$0.05" in ok("agents")
    finally:
        ok("stop")


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "1e10"])
def test_add_refuses_a_budget_that_is_not_a_positive_number(value: str) -> None:
    one_line_error(orchestrate("add", "x", "--max-cost-usd", value), 2, "--max-cost-usd must be a positive number")
    assert as_json("tasks") == []


def test_a_tasks_budget_comes_from_add_or_its_task_file(project: Path) -> None:
    assert ok("add", "capped", "--max-cost-usd", "0.5").strip() == "task_001"
    (project / "tasks.yaml").write_text("- description: from a file\n  max_cost_usd: 2\n- description: no budget\n")
    ok("add", "--file", "tasks.yaml")
    assert [as_json("show", str(n))["max_cost_usd"] for n in (1, 2, 3)] == [0.5, 2.0, None]
    assert "  budget:      $0.50 a run (a claude run stops there)" in ok("show", "1")
    assert "budget:" not in ok("show", "3")
    for bad in ("free", "-3", "true", "[1]"):
        (project / "bad.yaml").write_text(f"- description: fine\n- description: bad\n  max_cost_usd: {bad}\n")
        one_line_error(orchestrate("add", "--file", "bad.yaml"), 2, "bad.yaml: task 2: max_cost_usd must be a positive")
    assert len(as_json("tasks")) == 3  # nothing of a bad file was added
