"""What the CLI prints for people: compact tables and lines for an 80-column terminal (the JSON
shapes are orchestrate.shapes)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from typing import Any

from orchestrate.api import Head, Run, Slot, Spending, Worktrees, next_try
from orchestrate.core.states import Status
from orchestrate.core.store import Task, task_name
from orchestrate.shapes import PRIORITY_NAMES, iso, money


def duration(seconds: float) -> str:
    """A short human duration: 45s, 12m, 3h05m, 2d."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s" if s < 600 else f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d"


def size(n: float) -> str:
    """Bytes as people read them: 512 B, 1.2 MB."""
    unit, larger = "B", iter(("KB", "MB", "GB"))
    while n >= 1024 and unit != "GB":
        n, unit = n / 1024, next(larger)
    return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"


def worktrees_size(trees: Worktrees) -> str:
    """The worktrees' size as last measured; status never walks them itself."""
    return "size not measured yet" if trees.measured_at is None else size(trees.bytes)


# C0 and C1 control characters but newline and tab, DEL too: a terminal would act on them (move the
# cursor, set the title, clear the screen), so people see them spelled out, as \x1b.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0))}


def visible(text: str) -> str:
    """`text` with its control characters but newline and tab written out: `\\x1b` for ESC."""
    return text.translate(_CONTROLS)


def shorten(text: str, width: int) -> str:
    """`text` on one line, visible (see `visible`), cut to `width` with an ellipsis."""
    flat = " ".join(visible(text).split())
    return flat if len(flat) <= width else flat[: max(width - 1, 0)] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int | None = None) -> str:
    """Left-aligned columns; the last one is shortened so each line fits `width`."""
    width = width or shutil.get_terminal_size((80, 24)).columns
    rows = [[visible(c) for c in row] for row in rows]
    cols = list(zip(headers, *rows, strict=True))
    widths = [max(len(c) for c in col) for col in cols[:-1]]
    room = max(width - sum(widths) - 2 * len(widths), 20)
    lines = []
    for row in [headers, *rows]:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, shorten(row[-1], room)]).rstrip())
    return "\n".join(lines)


def shown_status(task: Task, now: float | None = None) -> str:
    """What the tables say of a task's state: pending with a dependency not completed is blocked;
    pending after a failed attempt says when it is tried again."""
    if task.blocked:
        return "blocked"
    if (at := next_try(task, now)) is not None:
        return f"pending (retry in {duration(at - (time.time() if now is None else now))})"
    return task.status


def next_try_line(task: Task, now: float | None = None) -> str:
    """`task_002 in 1m40s (attempt 3 of 4)`, for a task waiting out a retry backoff."""
    now = time.time() if now is None else now
    return f"{task.name} in {_attempt_in(task, now)}"


def _attempt_in(task: Task, now: float) -> str:
    return f"{duration(task.not_before - now)} (attempt {task.attempts + 1} of {task.max_retries + 1})"


def task_agent(task: Task) -> str:
    """The slot that ran it, else the preferred agent in parentheses."""
    if task.agent:
        return task.agent
    return f"({task.agent_type})" if task.agent_type else "-"


def tree(tasks: Sequence[Task]) -> list[tuple[int, Task]]:
    """`tasks` as the plan's tree, depth first: each task at its depth, under the task that queued it;
    one whose parent is not among them is a root. In the order given among siblings."""
    shown = {t.id for t in tasks}
    children: dict[int | None, list[Task]] = {}
    for t in tasks:
        children.setdefault(t.parent if t.parent in shown else None, []).append(t)
    ordered: list[tuple[int, Task]] = []
    stack = [(0, t) for t in reversed(children.get(None, []))]
    while stack:  # a loop, not recursion: a plan may nest deeper than Python's stack
        depth, task = stack.pop()
        ordered.append((depth, task))
        stack += [(depth + 1, c) for c in reversed(children.get(task.id, []))]
    return ordered


def tasks_table(tasks: Sequence[Task], now: float | None = None, depths: Sequence[int] = ()) -> str:
    """One line a task; with `depths`, each task's ID indented by its depth in the plan's tree."""
    now = time.time() if now is None else now
    depths = depths or [0] * len(tasks)
    rows = [
        (
            "  " * min(depth, 8) + t.name,
            shown_status(t, now),
            PRIORITY_NAMES[t.priority],
            task_agent(t),
            duration(now - t.created_at),
            ("[plan] " if t.plan else "") + t.description,
        )
        for t, depth in zip(tasks, depths, strict=True)
    ]
    return table(("ID", "STATUS", "PRIORITY", "AGENT", "AGE", "DESCRIPTION"), rows)


def slots_table(slots: Sequence[Slot], now: float | None = None) -> str:
    now = time.time() if now is None else now
    rows = [
        (
            s.id,
            s.state,
            task_name(s.task_id) if s.task_id else "-",
            str(s.pid or "-"),
            duration(now - s.since) if s.since and s.state == "busy" else "-",
            f"{s.rss_mb:.0f} MB" if s.rss_mb is not None else "-",
            str(s.tasks_done),
            f"${s.cost_usd:.2f}",
            s.note or "",
        )
        for s in slots
    ]
    return table(("AGENT", "STATE", "TASK", "PID", "ELAPSED", "MEMORY", "DONE", "COST", "NOTE"), rows)


def head_line(head: Head, now: float | None = None) -> str:
    now = time.time() if now is None else now
    if head.running and head.started_at is not None:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(head.started_at))
        return f"running, pid {head.pid}, since {since} (up {duration(now - head.started_at)})"
    if head.problem:
        return f"not responding: {head.problem}"
    if head.pid is not None:
        return f"not running (pid {head.pid} stopped without cleaning up; `orchestrate start` recovers)"
    return "not running (`orchestrate start` starts it)"


def counts_line(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    parts = ", ".join(f"{n} {state}" for state, n in counts.items())
    return f"{total} tasks: {parts}"


def paused_line(since: float, now: float | None = None) -> str:
    now = time.time() if now is None else now
    at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
    return f"since {at} (for {duration(now - since)})"


def spent_line(spent: Spending) -> str:
    """What every run has cost, and how much of it counts toward the spending cap."""
    line = f"{money(spent.cost_usd)} over all runs"
    if spent.cap is not None:
        line += f" ({money(spent.counted)} of the {money(spent.cap)} cap, task_queue.max_cost_usd)"
    return line


def show_task(task: Task, runs: Sequence[Run] = (), now: float | None = None, children: Sequence[Task] = ()) -> str:
    """Everything about one task, one `label: value` per line, then a line for each of its runs."""
    now = time.time() if now is None else now
    fields: list[tuple[str, Any]] = [
        ("status", shown_status(task, now)),
        ("plan", "yes: its agent is told how to queue subtasks" if task.plan else ""),
        ("parent", task_name(task.parent) if task.parent else ""),
        ("children", ", ".join(f"{c.name} ({shown_status(c, now)})" for c in children)),
        ("priority", PRIORITY_NAMES[task.priority]),
        ("agent", task_agent(task) + (f", pid {task.pid}" if task.pid and task.status == Status.RUNNING else "")),
        ("attempts", f"{task.attempts} (up to {task.max_retries} retries after the first)"),
        ("depends on", ", ".join(task_name(d) for d in task.depends_on)),
        ("context", ", ".join(task.context_files)),
        ("timeout", f"{task.timeout_seconds / 60:g} min" if task.timeout_seconds else ""),
        ("workspace", task.workspace),
        ("verify", "(none)" if task.verify == () else "; ".join(task.verify or ())),
        ("created", f"{iso(task.created_at)} ({duration(now - task.created_at)} ago)"),
        ("started", iso(task.started_at)),
        ("finished", iso(task.finished_at)),
        ("next try", f"in {_attempt_in(task, now)}, at {iso(task.not_before)}" if next_try(task, now) else ""),
        ("cost", _cost(task, len(runs))),
        ("budget", f"{money(task.max_cost_usd)} a run (a claude run stops there)" if task.max_cost_usd else ""),
        ("tokens", _tokens(task)),
        ("session", task.session_id),
        ("output", task.output_file),
        ("log", task.log_file),
        ("error", task.error),
    ]
    lines = [f"{task.name}  {task.description}"]
    lines += [f"  {label + ':':<12} {value}" for label, value in fields if value]
    if runs:
        lines += ["", *(f"  {line}" for line in runs_table(runs, now).splitlines())]
    return visible("\n".join(lines))


def _cost(task: Task, runs: int) -> str:
    if task.cost_usd is None:
        return ""
    return money(task.cost_usd) + (f" over {runs} runs" if runs > 1 else "")


def runs_table(runs: Sequence[Run], now: float | None = None) -> str:
    """One line a run: when it started, how long it took, how it ended, what it cost, its error."""
    now = time.time() if now is None else now
    width = shutil.get_terminal_size((80, 24)).columns - 2  # show indents it
    rows = [
        (
            str(r.n),
            r.agent,
            when(r.started_at, now),
            duration(r.finished_at - r.started_at) if r.finished_at is not None else "-",
            r.outcome,
            "-" if r.exit_code is None else str(r.exit_code),
            "-" if r.cost_usd is None else money(r.cost_usd),
            _run_tokens(r),
            r.error or "",
        )
        for r in runs
    ]
    return table(("RUN", "AGENT", "STARTED", "TOOK", "OUTCOME", "EXIT", "COST", "TOKENS", "ERROR"), rows, width)


def when(ts: float, now: float) -> str:
    """A local time as `ls -l` shortens it: the time of day if it is today's, else the date."""
    today = time.localtime(now)[:3] == time.localtime(ts)[:3]
    return time.strftime("%H:%M:%S" if today else "%Y-%m-%d", time.localtime(ts))


def _run_tokens(run: Run) -> str:
    if run.input_tokens is None and run.output_tokens is None:
        return "-"
    return f"{run.input_tokens or 0}/{run.output_tokens or 0}"


def _tokens(task: Task) -> str:
    if task.input_tokens is None and task.output_tokens is None:
        return ""
    return f"{task.input_tokens or 0} in, {task.output_tokens or 0} out"
