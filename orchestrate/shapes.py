"""The JSON shapes in docs/design.md, which scripts rely on: what `--json` prints and the dashboard's API answers."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from orchestrate.api import Head, Slot, Worktrees, next_try
from orchestrate.core.store import PRIORITIES, Task, task_name

PRIORITY_NAMES = {v: k for k, v in PRIORITIES.items()}


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
    }


def status_json(head: Head, counts: dict[str, int], slots: Sequence[Slot], worktrees: Worktrees) -> dict[str, Any]:
    """`status --json`: the head, the counts by status and the agent slots, as docs/design.md has them,
    and the task worktrees (issue 5; bytes as last measured, 0 before any measurement)."""
    shape = {"head": head_json(head), "counts": counts, "agents": [slot_json(s) for s in slots]}
    return shape | {"worktrees": {"count": worktrees.found, "bytes": worktrees.bytes}}


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
