"""What the runs cost, end to end through the fake claude (which reports a cost as the real one
does): a task's cost is the sum over its runs, and task_queue.max_cost_usd holds claiming."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from conftest import orchestrate, wait_until

CONFIG = """\
agents:
  claude:
    env: {{IS_SANDBOX: "1"}}
task_queue:
  max_retries: 1
  retry_delay_seconds: 0
  kill_grace_seconds: 1
{more}"""


def configure(project: Path, more: str = "") -> None:
    (project / "config.yaml").write_text(CONFIG.format(more=more))


def ok(*args: str) -> str:
    done = orchestrate(*args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def show(ref: int) -> dict[str, Any]:
    return json.loads(ok("show", str(ref), "--json"))  # type: ignore[no-any-return]


def spent(project: Path) -> float:
    conn = sqlite3.connect(project / "tasks.db")
    try:
        return float(conn.execute("SELECT cost_usd FROM spending").fetchone()[0])
    finally:
        conn.close()


def run_costs(project: Path, task_id: int) -> list[float]:
    conn = sqlite3.connect(project / "tasks.db")
    try:
        return [r[0] for r in conn.execute("SELECT cost_usd FROM runs WHERE task_id = ? ORDER BY n", (task_id,))]
    finally:
        conn.close()


def test_a_retried_tasks_cost_is_the_sum_over_its_runs_and_never_goes_down(project: Path, fakes: Path) -> None:
    configure(project)
    ok("add", "Write notes [fake:fail-times=1] [fake:max-turns] [fake:cost=0.022]")  # a failure that cost
    assert orchestrate("run", timeout=120).returncode == 0
    costs = run_costs(project, 1)
    assert len(costs) == 2 and all(c > 0 for c in costs)
    assert abs(show(1)["cost_usd"] - sum(costs)) < 1e-9  # not the latest run's alone
    assert abs(spent(project) - sum(costs)) < 1e-9  # the queue's total is the runs' total


def test_the_cap_holds_claiming_until_it_is_raised(project: Path, fakes: Path) -> None:
    configure(project, "  max_cost_usd: 0.000001\n")  # the first run's cost reaches it
    ok("add", "First task")
    ok("add", "Second task")
    ok("start")
    try:
        wait_until(lambda: show(1)["status"] == "completed", message="the first task")
        wait_until(lambda: "claiming is held" in ok("status"), message="status to say claiming is held")
        assert show(2)["status"] == "pending"  # held: not claimed
        configure(project, "  max_cost_usd: 100\n")  # the running head rereads the file
        wait_until(lambda: show(2)["status"] == "completed", message="the second task, once the cap was raised")
    finally:
        ok("stop")


def test_retry_gives_the_cap_a_fresh_count(project: Path, fakes: Path) -> None:
    configure(project, "  max_cost_usd: 0.000001\n")
    ok("add", "Fails for good [fake:max-turns] [fake:cost=0.01]", "--max-retries", "0")
    ok("add", "Waits behind the cap")
    done = orchestrate("run", timeout=120)
    assert done.returncode == 1  # the cap was reached with a task left pending
    assert (show(1)["status"], show(2)["status"]) == ("failed", "pending")
    assert "claiming is held" in ok("status")
    ok("retry", "1")  # a fresh count: the queue may spend up to the cap again
    assert "claiming is held" not in ok("status")
    assert orchestrate("run", timeout=120).returncode == 1  # the retried task ran, and reached the cap again
    assert len(run_costs(project, 1)) == 2 and show(2)["status"] == "pending"


def test_a_claude_run_gets_the_tasks_budget_else_its_agents(project: Path, fakes: Path) -> None:
    (project / "config.yaml").write_text(CONFIG.format(more="").replace("    env:", "    max_cost_usd: 0.25\n    env:"))
    ok("add", "Own budget", "--max-cost-usd", "0.5")
    ok("add", "The agent's budget")
    ok("add", "Over budget [fake:cost=0.3]")
    assert orchestrate("run", timeout=120).returncode == 1  # the third stops at its budget, for good
    starts = [json.loads(line) for line in fakes.read_text().splitlines() if '"argv"' in line]
    budgets = {s["prompt"].split("\n")[2]: s["argv"][s["argv"].index("--max-budget-usd") + 1] for s in starts}
    assert budgets["Own budget"] == "0.5" and budgets["The agent's budget"] == "0.25"
    assert "budget" in show(3)["error"] and show(3)["status"] == "failed"
