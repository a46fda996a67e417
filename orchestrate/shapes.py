"""The JSON shapes in docs/design.md, which scripts rely on: what `--json` prints and the dashboard's API answers."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from orchestrate.api import PRIORITIES, Head, Run, Slot, Spending, Worktrees, next_try
from orchestrate.core.store import Task, task_name

PRIORITY_NAMES = {v: k for k, v in PRIORITIES.items()}


def money(usd: float) -> str:
    """Dollars to the cent, or to four decimals under a dollar when cents would round it off."""
    return f"${usd:.4f}" if usd < 1 and abs(usd * 100 - round(usd * 100)) > 1e-9 else f"${usd:.2f}"


def held(spent: float, cap: float | None) -> str | None:
    """Why claiming is held at `spent` USD under `cap`, or None."""
    if cap is None or spent < cap:
        return None
    return (
        f"spent {money(spent)} of task_queue.max_cost_usd ({money(cap)}); raise it in config.yaml,"
        " or `orchestrate retry` a task to count afresh"
    )


def iso(ts: float | None) -> str | None:
    """A timestamp as ISO 8601 in UTC, as every shape writes times."""
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(ts))


def task_json(task: Task) -> dict[str, Any]:
    """The task shape in docs/design.md, which scripts rely on (plus the derived `blocked`, and
    `next_try_at`: when a pending task waiting out a retry backoff is tried again, else null)."""
    return {
        "id": task.name,
        "description": task.description,
        "status": task.status,
        "priority": PRIORITY_NAMES[task.priority],
        "agent_type": task.agent_type,
        "agent": task.agent,
        "attempts": task.attempts,
        "max_retries": task.max_retries,
        "depends_on": [task_name(d) for d in task.depends_on],
        "created_at": iso(task.created_at),
        "started_at": iso(task.started_at),
        "finished_at": iso(task.finished_at),
        "output_file": task.output_file,
        "log_file": task.log_file,
        "error": task.error,
        "cost_usd": task.cost_usd,
        "blocked": task.blocked,
        "workspace": task.workspace,
        "verify": None if task.verify is None else list(task.verify),
        "next_try_at": iso(next_try(task)),
        "parent": None if task.parent is None else task_name(task.parent),
        "plan": bool(task.plan),
    }


def task_tree(ordered: Sequence[tuple[int, Task]]) -> list[dict[str, Any]]:
    """`tasks --json --tree`: the roots, each task's shape with its `children` nested, from the
    depth-first order render.tree gives."""
    roots: list[dict[str, Any]] = []
    path: list[dict[str, Any]] = []  # the latest task at each depth
    for depth, task in ordered:
        shape = task_json(task) | {"children": []}
        del path[depth:]
        (path[-1]["children"] if path else roots).append(shape)
        path.append(shape)
    return roots


def show_json(task: Task, runs: Sequence[Run], children: Sequence[Task] = ()) -> dict[str, Any]:
    """`show --json`: the task shape, plus its latest session, its tokens and its budget over every
    run, the tasks its agents queued, and each run."""
    more: dict[str, Any] = {"session_id": task.session_id, "input_tokens": task.input_tokens}
    more |= {
        "output_tokens": task.output_tokens,
        "max_cost_usd": task.max_cost_usd,
        "children": [c.name for c in children],
    }
    return task_json(task) | more | {"runs": [run_json(r) for r in runs]}


def run_json(run: Run) -> dict[str, Any]:
    """One start of an agent on a task, as the runs table keeps it."""
    return {
        "n": run.n,
        "agent": run.agent,
        "agent_type": run.agent_type,
        "claim": run.claim,
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "outcome": run.outcome,
        "exit_code": run.exit_code,
        "error": run.error,
        "cost_usd": run.cost_usd,
        "input_tokens": run.input_tokens,
        "output_tokens": run.output_tokens,
        "session_id": run.session_id,
    }


def status_json(
    head: Head,
    counts: dict[str, int],
    slots: Sequence[Slot],
    worktrees: Worktrees,
    spent: Spending,
    paused: float | None = None,
) -> dict[str, Any]:
    """`status --json`: the head, the counts by status and the agent slots, as docs/design.md has them,
    the task worktrees (issue 5; bytes as last measured, 0 before any measurement), and what every run
    has cost, with the spending cap and whether it holds claiming; and whether a person paused the
    queue (`orchestrate pause`), since when."""
    shape = {"head": head_json(head), "counts": counts, "agents": [slot_json(s) for s in slots]}
    spending = {"cost_usd": spent.cost_usd, "max_cost_usd": spent.cap, "held": spent.held is not None}
    shape |= {"worktrees": {"count": worktrees.found, "bytes": worktrees.bytes}, "spending": spending}
    return shape | {"paused": paused is not None, "paused_since": iso(paused)}


def head_json(head: Head) -> dict[str, Any]:
    """The head node: whether it runs, its pid, when it started; when it last beat, and whether it
    holds the queue without beating (stopped or stuck: `running` is then false)."""
    return {
        "running": head.running,
        "pid": head.pid,
        "started_at": iso(head.started_at),
        "heartbeat_at": iso(head.heartbeat_at),
        "unresponsive": head.unresponsive,
    }


def slot_json(slot: Slot) -> dict[str, Any]:
    """One agent slot as the head last reported it."""
    return {
        "id": slot.id,
        "type": slot.type,
        "state": slot.state,
        "task": task_name(slot.task_id) if slot.task_id else None,
        "pid": slot.pid,
        "rss_mb": slot.rss_mb,
        "tasks_done": slot.tasks_done,
    }
