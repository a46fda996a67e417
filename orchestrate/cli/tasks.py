"""The commands on tasks: add, tasks, show, logs, retry, cancel."""

# No `from __future__ import annotations`: typer reads the annotations (see cli/app.py).
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer

from orchestrate import api, shapes
from orchestrate.cli import render
from orchestrate.cli.app import JSON_HELP, echo_json, session
from orchestrate.core import store
from orchestrate.core.errors import OrchestrateError, UsageError
from orchestrate.core.states import ACTIVE, Status

STATUS_FILTERS = tuple(api.LIST_FILTERS)


def add(
    ctx: typer.Context,
    description: str | None = typer.Argument(None, help="What the agent should do."),
    priority: str = typer.Option("normal", "--priority", "-p", help="high, normal or low."),
    agent: str | None = typer.Option(None, "--agent", help="Preferred agent (entry name or type)."),
    after: list[str] = typer.Option(
        [], "--after", help="A task that must complete first; repeat it, or list several: task_004,task_005."
    ),
    timeout: float | None = typer.Option(None, "--timeout", help="Minutes before the agent is stopped."),
    context: list[Path] = typer.Option([], "--context", help="A file to give the agent; repeatable."),
    max_retries: int | None = typer.Option(None, "--max-retries", min=0, help="Retries after the first attempt."),
    file: Path | None = typer.Option(None, "--file", "-f", help="A YAML file of tasks to queue at once."),
    workspace: str | None = typer.Option(None, "--workspace", help="shared or worktree (default: the config's)."),
    verify: list[str] | None = typer.Option(
        None, "--verify", help="A shell command that must pass for the task to complete; repeatable."
    ),
    max_cost_usd: float | None = typer.Option(
        None, "--max-cost-usd", help="What one claude run of it may spend, in USD (--max-budget-usd)."
    ),
    parent: str | None = typer.Option(
        None,
        "--parent",
        envvar="ORCHESTRATE_TASK",
        help="The task that queues it (default: the task whose agent runs this, $ORCHESTRATE_TASK).",
    ),
    plan: bool = typer.Option(
        False, "--plan", help="A plan: its agent is told how to queue subtasks with this command."
    ),
) -> None:
    """Queue a task (or a file of tasks) and print its id."""
    from orchestrate.cli import taskfile  # only `add` parses task input

    cfg = session(ctx).config
    retries = cfg.task_queue.max_retries if max_retries is None else max_retries
    if (description is None) == (file is None):
        raise UsageError("give a task description or --file tasks.yaml (one of them)")
    parent_id = api.parse_task_id(parent) if parent else None
    if file is not None:
        batch = [new._replace(parent=parent_id) for new in taskfile.load(file, cfg.root, retries)]
    else:
        batch = [
            api.NewTask(
                description=description or "",
                priority=taskfile.priority(priority),
                agent_type=agent,
                timeout_seconds=taskfile.timeout_seconds(timeout),
                max_retries=retries,
                context_files=tuple(taskfile.context_file(str(c), Path.cwd(), cfg.root) for c in context),
                depends_on=taskfile.dependencies(after),
                workspace=taskfile.workspace(workspace),
                verify=tuple(verify) if verify else None,
                max_cost_usd=taskfile.max_cost_usd(max_cost_usd, "--max-cost-usd"),
                parent=parent_id,
                plan=plan,
            )
        ]
    with session(ctx).queue() as conn:
        ids = api.add(conn, cfg, batch)
        said = api.notes(conn, cfg, ids, batch)
    names: list[str] = []  # printed together: a thousand echoes cost more than the inserts
    for task_id in ids:
        names.append(store.task_name(task_id))
        if said[task_id]:  # after its id, as a person reads them
            typer.echo("\n".join(names))
            names = []
            for note in said[task_id]:
                typer.echo(f"note: {note}", err=True)
    if names:
        typer.echo("\n".join(names))


def tasks(
    ctx: typer.Context,
    status: str = typer.Option("all", "--status", "-s", help=f"One of: {', '.join(STATUS_FILTERS)}."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    tree: bool = typer.Option(False, "--tree", help="Each task under the task that queued it (--parent)."),
) -> None:
    """The tasks, oldest first; `--status active` means running; `--tree` shows plans as trees."""
    if status not in api.LIST_FILTERS:
        raise UsageError(f"--status must be one of {', '.join(STATUS_FILTERS)}, not {status!r}")
    with session(ctx).queue(create=False) as conn:
        found, head = api.list_tasks(conn, status), api.head(conn)
    if as_json:
        echo_json(shapes.task_tree(render.tree(found)) if tree else [shapes.task_json(t) for t in found])
        return
    if found and tree:
        depths, ordered = zip(*((d, t) for d, t in render.tree(found)), strict=True)
        typer.echo(render.tasks_table(ordered, depths=depths))
    elif found:
        typer.echo(render.tasks_table(found))
    else:
        typer.echo("no tasks" + ("" if status == "all" else f" with status {status}"))
    if head.problem:
        typer.echo(f"(the head node is not responding: {head.problem})", err=True)
    elif not head.running:
        typer.echo("(the head node is not running: `orchestrate start` works the queue)", err=True)


def show(ctx: typer.Context, task: str, as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """One task in full: attempts, error, output and log files, cost, and each of its runs."""
    with session(ctx).queue(create=False) as conn:
        found = api.get_task(conn, api.parse_task_id(task))
        runs, children = api.runs(conn, found.id), api.children(conn, found.id)
    if as_json:
        echo_json(shapes.show_json(found, runs, children))
        return
    typer.echo(render.show_task(found, runs, children=children))
    cfg = session(ctx).config
    from orchestrate.workspace import settings

    if (found.workspace or settings(cfg).mode) == "worktree":
        from orchestrate.workspace import branches

        for line in branches.branch_lines(cfg, found):
            typer.echo(render.visible(line))


def logs(
    ctx: typer.Context,
    task: str,
    follow: bool = typer.Option(False, "--follow", "-f"),
    attempt: int | None = typer.Option(
        None, "--attempt", "-a", min=1, help="Only what run N printed (`orchestrate show` lists the runs)."
    ),
) -> None:
    """Print what the task's agent printed; `-f` follows it while the task runs; `--attempt N`
    prints only what its run N printed."""
    if attempt is not None:
        if follow:
            raise UsageError("--attempt prints a run that has ended, which does not grow: drop --follow or --attempt")
        _run_log(ctx, task, attempt)
        return
    if session(ctx).config.features.get("postgres") is not None:  # its runs may have run on other machines
        _shared_log(ctx, task, follow)
        return
    found = session(ctx).task(task)
    path = api.log_path(session(ctx).config, found)
    if not path.exists() and not (follow and found.status in ACTIVE):
        raise OrchestrateError(f"{found.name} has no log yet ({path} does not exist): it has not run")
    offset, write = 0, _writer()
    while True:
        if path.exists():
            with path.open("rb") as log:
                log.seek(offset)
                chunk = log.read()
            offset += len(chunk)
            write(chunk)
        if not follow:
            return
        finished = session(ctx).task(task).status not in ACTIVE
        if finished and (not path.exists() or path.stat().st_size == offset):
            return
        time.sleep(0.2)  # following a file: poll it, as tail -f does


def _shared_log(ctx: typer.Context, ref: str, follow: bool) -> None:
    """`logs` on a PostgreSQL queue: each run's part of the log from this machine's file, or from
    what the database keeps of the file of the machine that ran it; `follow` polls while it runs."""
    from orchestrate.postgres import logs as shared

    cfg, write, offset = session(ctx).config, _writer(), 0
    quiet_since: float | None = None  # since when the task has ended with no more of its log arriving
    with session(ctx).queue(create=False) as conn:
        task_id = api.parse_task_id(ref)
        while True:
            found = api.get_task(conn, task_id)
            log = shared.Log(conn, cfg, found)
            if not log.parts and not (follow and found.status in ACTIVE):
                raise OrchestrateError(f"{found.name} has no log yet: it has not run")
            if moved := _print_shared(log.read(offset), found, write):
                offset, quiet_since = offset + moved, None
            if not follow or (found.status not in ACTIVE and offset >= log.size and not log.waiting):
                return
            if found.status not in ACTIVE:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > shared.SHIP_WAIT_S:
                    head = log.parts[-1].head
                    typer.echo(
                        f"note: {head} has not copied the last {log.waiting:,} bytes of {found.name}'s log to the"
                        f" database; {head}'s {found.log_file} has them",
                        err=True,
                    )
                    return
            time.sleep(shared.FOLLOW_S)  # pieces arrive once a second


def _print_shared(pieces: Iterator[Any], found: store.Task, write: Callable[[bytes], None]) -> int:
    """Print a shared log's data, each gap in it as a note on stderr: how far it went."""
    from orchestrate.postgres.logs import Gap

    moved = 0
    for piece in pieces:
        if isinstance(piece, Gap):
            typer.echo(f"note: {piece.said(found)}", err=True)
            moved += piece.size
        else:
            write(piece)
            moved += len(piece)
    return moved


def _run_log(ctx: typer.Context, task: str, n: int) -> None:
    """Print run `n`'s part of the task's log."""
    cfg = session(ctx).config
    with session(ctx).queue(create=False) as conn:
        found = api.get_task(conn, api.parse_task_id(task))
        if cfg.features.get("postgres") is not None:
            from orchestrate.postgres import logs as shared

            part = shared.run_part(conn, found, n)
            if part is not None and part.head != cfg.features["postgres"].head:  # another machine ran it
                _print_shared(shared.Log(conn, cfg, found, [part]).read(0), found, _writer())
                return
        path, start, end = api.log_part(conn, cfg, found, n)
    write = _writer()
    with path.open("rb") as log:
        log.seek(start)
        while start < end and (chunk := log.read(min(end - start, 1 << 20))):
            start += len(chunk)
            write(chunk)


def _writer() -> Callable[[bytes], None]:
    """How `logs` prints what an agent wrote: the exact bytes into a pipe or a file; on a terminal,
    text with its control characters written out, so that the agent cannot drive the terminal."""
    if not sys.stdout.isatty():

        def exact(chunk: bytes) -> None:
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()

        return exact
    import codecs

    decode = codecs.getincrementaldecoder("utf-8")(errors="replace").decode  # a chunk may end mid-character

    def shown(chunk: bytes) -> None:
        sys.stdout.write(render.visible(decode(chunk)))
        sys.stdout.flush()

    return shown


def retry(ctx: typer.Context, task: str) -> None:
    """Put a failed or cancelled task back in the queue with a fresh retry budget; a pending one
    waiting out a retry backoff is tried now, with a fresh budget too."""
    now = time.time()
    with session(ctx).queue() as conn:
        before = api.retry(conn, api.parse_task_id(task), now)
    if before.status == Status.PENDING:
        waited = render.duration(before.not_before - now)
        typer.echo(f"{before.name} is due now (it was waiting {waited} to retry; retry budget reset)")
    else:
        typer.echo(f"{before.name} is pending again (was {before.status}; retry budget reset)")
    if (cap := api.spending_cap(session(ctx).config)) is not None:
        typer.echo(f"the spending cap (task_queue.max_cost_usd, {shapes.money(cap)}) counts afresh from now")


def cancel(ctx: typer.Context, task: str) -> None:
    """Stop a pending or running task for good."""
    with session(ctx).queue() as conn:
        before = api.cancel(conn, api.parse_task_id(task))
        waiting = api.waiting_on(conn, before.id)
    note = " (the head stops its agent)" if before.status == Status.RUNNING else ""
    typer.echo(f"{before.name} cancelled{note}")
    if waiting:
        names = ", ".join(store.task_name(t) for t in waiting)
        typer.echo(f"note: {names} wait(s) for it and stay blocked until it is retried", err=True)
