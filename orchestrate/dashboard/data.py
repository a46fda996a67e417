"""What the dashboard reads from the queue and the agents' files: the JSON shapes of docs/design.md, the page's
extras beside them, and the Prometheus text for /metrics."""

from __future__ import annotations

import math
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestrate import api, shapes
from orchestrate.core.config import Config
from orchestrate.core.errors import OrchestrateError
from orchestrate.core.states import Status
from orchestrate.core.store import SELECT_TASKS, Task, task_from_row
from orchestrate.dashboard import completed

AGENT_STATES = ("idle", "busy", "cooling", "unavailable")
LOG_TAIL = 64 * 1024  # what a first look at a log shows: its end
LOG_CHUNK = 256 * 1024  # the most one request returns; a client follows with the next offset
OUTPUT_MAX = 1024 * 1024
CHART_BARS = 30
# Bar widths for the completions chart: the first that fits the history in CHART_BARS bars.
BAR_SECONDS = (2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400, 7 * 86400)


def status(conn: sqlite3.Connection, cfg: Config, now: float | None = None) -> dict[str, Any]:
    """`status --json`, plus what the page shows besides: the total cost, and each slot's cost
    (what its runs cost, over every head's), time on its task and note."""
    now = time.time() if now is None else now
    head, counts = api.head(conn, now), api.counts(conn)
    slots = api.slots(conn) if head.running else []
    spent = api.spending(conn, api.spending_cap(cfg))
    shown = shapes.status_json(head, counts, slots, api.worktree_usage(cfg), spent, api.paused(conn))
    for agent, slot in zip(shown["agents"], slots, strict=True):
        elapsed = round(now - slot.since, 1) if slot.state == "busy" and slot.since is not None else None
        agent.update(cost_usd=slot.cost_usd, elapsed_s=elapsed, note=slot.note)
    shown["cost_usd"] = spent.cost_usd
    shown["held_because"] = spent.held  # the sentence saying why claiming is held, or None
    return shown


def tasks(conn: sqlite3.Connection, status: str = "all", search: str = "", limit: int | None = None) -> list[Task]:
    """`tasks --status` (a key of LIST_FILTERS), narrowed to those whose id or description
    contains `search`, and to the newest `limit`; oldest first, as the CLI lists them."""
    where, args = api.LIST_FILTERS[status], []
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        named, named_args = _named(search, conn.execute("SELECT max(id) FROM tasks").fetchone()[0] or 0)
        where += f" AND (t.description LIKE ? ESCAPE '\\' OR {named})"
        args += [f"%{escaped}%", *named_args]
    newest = "" if limit is None else f" LIMIT {int(limit)}"
    rows = conn.execute(f"{SELECT_TASKS} WHERE {where} ORDER BY t.id DESC{newest}", args)
    return [task_from_row(r) for r in reversed(rows.fetchall())]


def _named(search: str, last: int) -> tuple[str, list[Any]]:
    """SQL true of the tasks up to id `last` whose name (store.task_name: task_ and at least three
    digits) contains `search`, in any case, by comparing ids: printf'ing every name costs more than
    the search."""
    low = search.lower()
    before = low.rstrip("0123456789")
    number = low[len(before) :]
    if not number or len(number) > len(str(api.MAX_ID)) or not "task_".endswith(before):
        return ("TRUE" if not number and before in "task_" else "FALSE"), []
    padded = [i for i in range(1, 100) if (f"{i:03d}".startswith(number) if before else number in f"{i:03d}")]
    small = f"t.id IN ({', '.join(map(str, padded))})" if padded else "FALSE"
    if not before:  # anywhere in the number
        return f"({small} OR (t.id >= 100 AND CAST(t.id AS TEXT) LIKE ?))", [f"%{number}%"]
    if number.startswith("0"):  # only the padded begin with 0
        return small, []
    starts = [int(number) * 10**k for k in range(20) if int(number) * 10**k <= last]
    ranges = [(max(lo, 100), min(lo + 10 ** (len(str(lo)) - len(number)) - 1, last)) for lo in starts]
    ranges = [(lo, hi) for lo, hi in ranges if lo <= hi]
    return f"({' OR '.join([small, *('t.id BETWEEN ? AND ?' for _ in ranges)])})", [n for r in ranges for n in r]


def completions(conn: sqlite3.Connection, cfg: Config, now: float | None = None) -> dict[str, Any]:
    """Tasks completed per interval, from the first completion to now, in at most CHART_BARS bars.

    Bars are aligned to multiples of their width, so they stay put from one poll to the next.
    """
    now = time.time() if now is None else now
    with completed.read(conn, cfg) as done:
        history = now - done.finished[0] if done.finished else 0
        width = next((w for w in BAR_SECONDS if w * (CHART_BARS - 1) >= history), BAR_SECONDS[-1])
        end = (math.floor(now / width) + 1) * width
        start = end - width * CHART_BARS
        counts = [done.between(start + i * width, start + (i + 1) * width) for i in range(CHART_BARS - 1)]
        counts.append(done.between(end - width, math.inf))  # a clock set back: the last bar has the future
    return {"start": shapes.iso(start), "bar_seconds": width, "counts": counts}


def log_chunk(path: Path, offset: int | None) -> dict[str, Any]:
    """Up to LOG_CHUNK bytes of a log from `offset` (by default its last LOG_TAIL bytes), as text.

    `next` is where to read on from. A log shorter than `offset` was started afresh, so it is
    read from its start, and `offset` in the answer says where this text begins.
    """
    try:
        with path.open("rb") as log:
            size = os.fstat(log.fileno()).st_size
            start = max(size - LOG_TAIL, 0) if offset is None else offset if offset <= size else 0
            log.seek(start)
            data = log.read(LOG_CHUNK)
    except FileNotFoundError:
        return {"exists": False, "offset": 0, "next": 0, "size": 0, "text": ""}
    except OSError as exc:
        raise OrchestrateError(f"cannot read {path}: {exc.strerror}") from None
    text, used = _decode(data)
    return {"exists": True, "offset": start, "next": start + used, "size": size, "text": text}


def shared_log_chunk(conn: Any, cfg: Config, task: Task, offset: int | None) -> dict[str, Any]:
    """log_chunk on a PostgreSQL queue: offsets count over the task's runs' parts, each read from
    this machine's file or from what the database keeps of another's; what it left out is said
    in the text, in brackets."""
    from orchestrate.postgres import logs as shared

    log = shared.Log(conn, cfg, task)
    if not log.parts:
        return {"exists": False, "offset": 0, "next": 0, "size": 0, "text": ""}
    start = max(log.size - LOG_TAIL, 0) if offset is None else offset if offset <= log.size else 0
    texts, data, used = [], b"", start
    for piece in log.read(start, LOG_CHUNK):
        if isinstance(piece, shared.Gap):  # what came before it is all there will be: decode it whole
            texts += [data.decode(errors="replace"), f"[orchestrate: {piece.said(task)}]\n"]
            data, used = b"", used + len(data) + piece.size
        else:
            data += piece
    text, taken = _decode(data)
    return {"exists": True, "offset": start, "next": used + taken, "size": log.size, "text": "".join(texts) + text}


def _decode(data: bytes) -> tuple[str, int]:
    """The text in `data`, and how many bytes it used: a character the agent has only half
    written yet is left for the next read instead of becoming garbage."""
    try:
        return data.decode(), len(data)
    except UnicodeDecodeError as exc:
        if exc.reason == "unexpected end of data":
            return data[: exc.start].decode(errors="replace"), exc.start
        return data.decode(errors="replace"), len(data)


def output_text(cfg: Config, task: Task) -> str | None:
    """The task's output file (what orchestrate wrote when it ended), or None before there is one."""
    if not task.output_file:
        return None
    path = cfg.root / task.output_file
    try:
        with path.open("rb") as output:
            data = output.read(OUTPUT_MAX + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OrchestrateError(f"cannot read {path}: {exc.strerror}") from None
    text = data[:OUTPUT_MAX].decode(errors="replace")
    if len(data) > OUTPUT_MAX:
        text += f"\n[… cut at {OUTPUT_MAX // 1024} KiB: the whole file is {task.output_file}]"
    return text


def metrics(conn: sqlite3.Connection, cfg: Config, now: float | None = None) -> str:
    """The queue in Prometheus' text exposition format (version 0.0.4)."""
    head = api.head(conn, now)
    counts = api.counts(conn)
    slots = api.slots(conn) if head.running else []
    lines = _family("orchestrate_head_running", "gauge", "1 while a head node works this queue.", [("", head.running)])
    tasks_by_status = [(f'{{status="{s}"}}', counts[s]) for s in Status]
    lines += _family("orchestrate_tasks", "gauge", "Tasks in the queue by status.", tasks_by_status)
    agents_by_state = [(f'{{state="{s}"}}', sum(a.state == s for a in slots)) for s in AGENT_STATES]
    lines += _family("orchestrate_agents", "gauge", "The head's agent slots by state.", agents_by_state)
    with completed.read(conn, cfg) as done:
        lines += _durations(done)
    cost = [("", api.spending(conn, None).cost_usd)]  # every run's, added as each ends: it never goes down
    lines += _family("orchestrate_cost_usd_total", "counter", "What every run of an agent has cost, in USD.", cost)
    return "\n".join(lines) + "\n"


def _durations(done: completed.Completed) -> list[str]:
    """A histogram of completed tasks' run time (finished_at - started_at of their last attempt)."""
    buckets = [(f'_bucket{{le="{b}"}}', n) for b, n in zip(completed.DURATION_BUCKETS, done.within, strict=True)]
    samples = [*buckets, ('_bucket{le="+Inf"}', done.timed), ("_sum", done.seconds), ("_count", done.timed)]
    return _family("orchestrate_task_duration_seconds", "histogram", "Run time of completed tasks.", samples)


def _family(name: str, kind: str, meaning: str, samples: Sequence[tuple[str, float]]) -> list[str]:
    lines = [f"# HELP {name} {meaning}", f"# TYPE {name} {kind}"]
    return lines + [f"{name}{suffix} {_number(value)}" for suffix, value in samples]


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
