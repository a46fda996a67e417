"""Turn what a user typed (options, or a tasks.yaml in the seed's Appendix A format) into NewTasks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestrate.api import PRIORITIES, NewTask, parse_task_id
from orchestrate.configfile import LARGEST, read_yaml
from orchestrate.core.errors import UsageError

FIELDS = (
    "id",
    "description",
    "priority",
    "preferred_agent",
    "timeout_minutes",
    "context_files",
    "depends_on",
    "max_retries",
    "subtasks",  # appended to the description as a checklist
    "context_required",  # accepted from the seed's examples; context is always given
    "workspace",
    "verify",
    "max_cost_usd",
    "plan",  # its agent is told how to queue subtasks
)
EVERY_OTHER = "all"  # `depends_on: all`: a final task, after every other task in the file


def priority(text: str) -> int:
    try:
        return PRIORITIES[text.strip().lower()]
    except KeyError:
        raise UsageError(f"priority must be high, normal or low, not {text!r}") from None


def timeout_seconds(minutes: Any) -> float | None:
    if minutes is None:
        return None
    if isinstance(minutes, (int, float)) and not isinstance(minutes, bool) and 0 < minutes <= LARGEST:
        return float(minutes) * 60
    raise UsageError(f"timeout must be a positive number of minutes, at most {LARGEST:g}, not {minutes!r}")


def max_cost_usd(usd: Any, name: str = "max_cost_usd") -> float | None:
    """What one claude run of the task may spend: a positive number of dollars, or None."""
    if usd is None:
        return None
    if isinstance(usd, (int, float)) and not isinstance(usd, bool) and 0 < usd <= LARGEST:
        return float(usd)
    raise UsageError(f"{name} must be a positive number of dollars, at most {LARGEST:g}, not {usd!r}")


def workspace(mode: Any) -> str | None:
    if mode is None or mode in ("shared", "worktree"):
        return mode  # type: ignore[no-any-return]
    raise UsageError(f"workspace must be shared or worktree, not {mode!r}")


def verify(commands: Any) -> tuple[str, ...] | None:
    if commands is None:
        return None
    return tuple(str(c) for c in _strings(commands, "verify"))  # [] turns the checks off


def context_file(name: str, base: Path, root: Path) -> str:
    """Check that a context file exists; keep it relative to the project when it is inside it."""
    path = (base / name).resolve()
    if path.is_dir():
        raise UsageError(
            f"context file {name} is a directory ({path}); --context and context_files take files,"
            f" so name the ones in it to give, e.g. {Path(name, 'notes.md')}"
        )
    if not path.is_file():
        raise UsageError(f"context file {name} does not exist (looked for {path})")
    return str(path.relative_to(root.resolve())) if path.is_relative_to(root.resolve()) else str(path)


def dependencies(refs: Sequence[str]) -> tuple[int, ...]:
    """Task ids from `--after` values, which may also be comma-separated."""
    return tuple(parse_task_id(part) for ref in refs for part in ref.split(",") if part.strip())


def load(path: Path, root: Path, max_retries: int) -> list[NewTask]:
    """Read a task file: a list of tasks, a mapping with `tasks:`, or one task."""
    data = read_yaml(path, UsageError)
    if isinstance(data, dict):
        data = data["tasks"] if set(data) == {"tasks"} else [data]
    if not isinstance(data, list) or not data:
        raise UsageError(f"{path}: expected a list of tasks, each with at least a description")
    entries = [_entry(item, n, path) for n, item in enumerate(data, start=1)]
    local = {str(e["id"]): n for n, e in enumerate(entries) if e.get("id") is not None}
    if len(local) != sum(1 for e in entries if e.get("id") is not None):
        raise UsageError(f"{path}: two tasks share an id; ids must be unique within the file")
    batch = [_task(e, n, path, root, local, max_retries) for n, e in enumerate(entries)]
    for n, e in enumerate(entries):
        if e.get("depends_on") == EVERY_OTHER and EVERY_OTHER not in local:
            batch[n] = batch[n]._replace(after_new=tuple(i for i in range(len(batch)) if i != n))
    return batch


def _entry(item: Any, n: int, path: Path) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise UsageError(f"{path}: task {n}: expected a mapping with a description, got {item!r}")
    unknown = [k for k in item if k not in FIELDS]
    if unknown:
        raise UsageError(f"{path}: task {n}: unknown field {unknown[0]!r} (known: {', '.join(FIELDS)})")
    return item


def _task(e: dict[str, Any], n: int, path: Path, root: Path, local: dict[str, int], retries: int) -> NewTask:
    label = str(e.get("id", n + 1))
    where = f"{path}: task {label}"
    try:
        return _build(e, label, path, root, local, retries)
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None


def _build(e: dict[str, Any], label: str, path: Path, root: Path, local: dict[str, int], retries: int) -> NewTask:
    description = e.get("description")
    if not isinstance(description, str) or not description.strip():
        raise UsageError("needs a description (a non-empty string)")
    subtasks = _strings(e.get("subtasks"), "subtasks")
    if subtasks:
        description = description.rstrip() + "\n" + "\n".join(f"- {s}" for s in subtasks)
    refs = [str(r) for r in _strings(e.get("depends_on"), "depends_on")]
    if refs == [EVERY_OTHER] and EVERY_OTHER not in local:
        refs = []  # load() makes it wait for every other task of the file
    max_retries = e.get("max_retries", retries)
    if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
        raise UsageError(f"max_retries must be a whole number, 0 or more, not {max_retries!r}")
    agent = e.get("preferred_agent")
    if agent is not None and not isinstance(agent, str):
        raise UsageError(f"preferred_agent must be an agent name, not {agent!r}")
    return NewTask(
        description=description,
        priority=priority(str(e.get("priority", "normal"))),
        agent_type=agent,
        timeout_seconds=timeout_seconds(e.get("timeout_minutes")),
        max_retries=max_retries,
        context_files=tuple(
            context_file(str(f), path.parent, root) for f in _strings(e.get("context_files"), "context_files")
        ),
        depends_on=tuple(_existing(r) for r in refs if r not in local),
        after_new=tuple(local[r] for r in refs if r in local),
        label=label,
        workspace=workspace(e.get("workspace")),
        verify=verify(e.get("verify")),
        max_cost_usd=max_cost_usd(e.get("max_cost_usd")),
        plan=_flag(e.get("plan", False), "plan"),
    )


def _flag(value: Any, name: str) -> bool:
    if type(value) is not bool:
        raise UsageError(f"{name} must be true or false, not {value!r}")
    return value


def _existing(ref: str) -> int:
    try:
        return parse_task_id(ref)
    except UsageError:
        raise UsageError(f"depends_on: {ref!r} is neither a task in this file nor a task id") from None


def _strings(value: Any, name: str) -> list[Any]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in items):
        raise UsageError(f"{name} must be a list of strings, not {value!r}")
    return items
