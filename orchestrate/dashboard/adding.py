"""The body of the dashboard's POST /api/tasks, read into the NewTask that `orchestrate add` would
queue from the same values, through the CLI's own validators."""

from __future__ import annotations

from typing import Any

from orchestrate import api
from orchestrate.cli import taskfile
from orchestrate.core.errors import UsageError

FIELDS = ("description", "priority", "agent", "after", "plan")


def new_task(body: Any, max_retries: int) -> api.NewTask:
    """`body`, a JSON object of FIELDS, as a NewTask; a value `orchestrate add` would refuse is a UsageError."""
    if not isinstance(body, dict):
        raise UsageError('the body must be a JSON object such as {"description": "Write the parser"}')
    if unknown := [key for key in body if key not in FIELDS]:
        raise UsageError(f"unknown field {unknown[0]!r} (known: {', '.join(FIELDS)})")
    description = body.get("description")
    if not isinstance(description, str):
        raise UsageError(f"description must be the task's text, a string, not {_kind(description)}")
    plan = body.get("plan", False)
    if not isinstance(plan, bool):
        raise UsageError(f"plan must be true or false, not {_kind(plan)}")
    return api.NewTask(
        description=description,
        priority=taskfile.priority(_text(body, "priority") or "normal"),
        agent_type=_text(body, "agent") or None,  # the form's empty field: any agent
        max_retries=max_retries,
        depends_on=taskfile.dependencies(_refs(body.get("after"))),
        plan=plan,
    )


def _text(body: dict[str, Any], name: str) -> str:
    """The string field `name`, stripped; "" when it is missing or null."""
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise UsageError(f"{name} must be a string or null, not {_kind(value)}")
    return value.strip()


def _refs(after: Any) -> list[str]:
    """`after` as --after values: "task_004,task_005", or a list of ids (strings or numbers)."""
    if after is None:
        return []
    if isinstance(after, str):
        return [after]
    if isinstance(after, list) and all(isinstance(a, str | int) and not isinstance(a, bool) for a in after):
        return [str(a) for a in after]
    raise UsageError(f'after must be task ids, as "task_004,task_005" or ["task_004", 5], not {_kind(after)}')


def _kind(value: Any) -> str:
    """A JSON value as an error quotes it: never the whole of something huge."""
    shown = "null" if value is None else repr(value)
    return shown if len(shown) <= 40 else shown[:40] + "…"
