"""The commands on the head node: status and agents read it; start, run and stop run it."""

# No `from __future__ import annotations`: typer reads the annotations (see cli/app.py).
import time

import typer

from orchestrate import api, configfile, shapes
from orchestrate.cli import render
from orchestrate.cli.app import JSON_HELP, echo_json, session
from orchestrate.core.config import Config
from orchestrate.core.errors import AgentUnavailable, OrchestrateError, UsageError
from orchestrate.core.store import Task

AGENTS_HELP = "Agent slots for this run, overriding the configuration, e.g. claude:2,codex:2."


def status(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """The head node, the counts by status, busy agents, retries waiting and recent failures."""
    with session(ctx).queue(create=False) as conn:
        head, counts = api.head(conn), api.counts(conn)
        slots = api.slots(conn) if head.running else []
        failures, waiting = api.recent_failures(conn), api.backing_off(conn)
        spent = api.spending(conn, api.spending_cap(session(ctx).config))  # one row: never a scan of the runs
        paused = api.paused(conn)
    cfg = session(ctx).config
    trees = api.worktree_usage(cfg)
    if as_json:
        echo_json(shapes.status_json(head, counts, slots, trees, spent, paused))
    else:
        _status_lines(head, counts, spent, slots, failures, waiting, paused)
        if trees.found:
            typer.echo(f"worktrees {trees.found} in {cfg.runtime_dir / 'worktrees'}, {render.worktrees_size(trees)}")
    if head.problem:  # said above; the exit status says it too, for scripts
        raise typer.Exit(1)


def _status_lines(
    head: api.Head,
    counts: dict[str, int],
    spent: api.Spending,
    slots: list[api.Slot],
    failures: list[Task],
    waiting: list[Task],
    paused: float | None,
) -> None:
    typer.echo(f"head     {render.head_line(head)}")
    typer.echo(f"queue    {render.counts_line(counts)}")
    if paused is not None:
        typer.echo(f"paused   {render.paused_line(paused)}: nothing new is claimed; `orchestrate resume` goes on")
    typer.echo(f"spent    {render.spent_line(spent)}")
    if held := spent.held:
        typer.echo(f"held     claiming is held: {held}")
    busy = [s for s in slots if s.state == "busy"]
    if slots:
        typer.echo(f"agents   {len(busy)} of {len(slots)} busy")
    if busy:
        typer.echo(render.slots_table(busy))
    for slot in slots:
        if slot.state in ("cooling", "unavailable"):
            typer.echo(render.visible(f"{slot.state:<8} {slot.id}: {slot.note}"))
    for task in waiting:
        typer.echo(f"retry    {render.next_try_line(task)}  {render.shorten(task.error or 'no error recorded', 34)}")
    for task in failures:
        typer.echo(f"failed   {task.name}  {render.shorten(task.error or 'no error recorded', 60)}")


def agents(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Each agent slot: state, current task, pid, memory, tasks done, cost."""
    with session(ctx).queue(create=False) as conn:
        head = api.head(conn)
        slots = api.slots(conn) if head.running else []
    if as_json:
        echo_json([shapes.slot_json(s) for s in slots])
    elif slots:
        typer.echo(render.slots_table(slots))
    elif not head.problem:
        typer.echo("no agents: the head node is not running (`orchestrate start` starts it)")
    if head.problem:
        typer.echo(f"orchestrate: no agents to show: {head.problem}", err=True)
        raise typer.Exit(1)


def slots_spec(spec: str) -> str:
    """`--agents` as configfile.with_slots reads it, or a usage error for what it would misread:
    an empty entry, a count that is not a plain number from 1 to configfile.MAX_SLOTS, an agent named twice."""
    seen: dict[str, str] = {}
    for part in spec.split(","):
        name, _, count = (p.strip() for p in part.partition(":"))
        if not part.strip() and spec.strip():
            raise UsageError(f"--agents: an empty entry in {spec!r}; give NAME:COUNT entries separated by commas")
        ok = name and count.isascii() and count.isdigit() and len(count) < 9 and 1 <= int(count) <= configfile.MAX_SLOTS
        if not ok:
            raise UsageError(
                f"--agents: expected NAME:COUNT with COUNT from 1 to {configfile.MAX_SLOTS}, got {part.strip()[:40]!r}"
            )
        if name in seen:
            raise UsageError(f"--agents: {name} is named twice ({seen[name]}, {name}:{count}); name each agent once")
        seen[name] = f"{name}:{count}"
    return ",".join(seen.values())


def _head_config(ctx: typer.Context, agents: str | None) -> Config:
    spec = None if agents is None else slots_spec(agents)
    cfg = session(ctx).config
    with session(ctx).queue():  # a queue file that is not one is exit 2 here, before any head starts
        pass
    from orchestrate.workspace import settings  # a small package, but not on status's path

    if settings(cfg).mode == "worktree":
        from orchestrate.workspace import branches

        branches.require_repository(cfg.root)
    cfg = configfile.with_slots(cfg, spec) if spec else cfg
    from orchestrate.cli import lifecycle

    lifecycle.no_head(cfg)
    _runnable(cfg)
    return cfg


def _runnable(cfg: Config) -> None:
    """Name each agent whose program is not installed, and how to install it; with none left that
    can run, fail rather than start a head that can only wait."""
    from orchestrate.slots import missing_programs

    missing = missing_programs(cfg.agents)
    if len(missing) == len({a.name for a in cfg.agents}):
        why = "; ".join(f"{name}: {why}" for name, why in missing.items())
        raise AgentUnavailable(f"no agent can run, so no head was started: {why}")
    for name, why in missing.items():
        typer.echo(f"warning: agent {name} cannot run: {why}", err=True)


def start(
    ctx: typer.Context,
    agents: str | None = typer.Option(None, "--agents", help=AGENTS_HELP),
    foreground: bool = typer.Option(False, "--foreground", help="Stay attached; Ctrl-C stops like `stop`."),
) -> None:
    """Start the head node in the background and return once it is up."""
    from orchestrate.cli import lifecycle

    cfg = _head_config(ctx, agents)
    if foreground:
        raise typer.Exit(_serve(cfg))
    options = session(ctx)
    argv = lifecycle.child_argv(options.config_path if options.explicit else None, options.db, agents)
    pid, log = lifecycle.start_background(cfg, argv)
    typer.echo(f"head running, pid {pid}; log: {log}")


def _serve(cfg: Config, until_idle: bool = False) -> int:
    """Run a head in this process with the built-in features this configuration turns on."""
    from orchestrate import builtin

    return builtin.serve(cfg, until_idle)


def run(ctx: typer.Context, agents: str | None = typer.Option(None, "--agents", help=AGENTS_HELP)) -> None:
    """Work the queue in the foreground until nothing is left: exit 0 if every task completed, 1 if any
    did not (failed, cancelled, or waiting for one that did), naming each."""
    code = _serve(_head_config(ctx, agents), until_idle=True)
    with session(ctx).queue(create=False) as conn:
        left, total = api.unfinished(conn), sum(api.counts(conn).values())
    for task, why in left[:SHOWN]:
        typer.echo(render.visible(f"{task.name} {render.shorten(why, 200)}"), err=True)
    if len(left) > SHOWN:
        typer.echo(f"... and {len(left) - SHOWN} more (`orchestrate tasks` lists them)", err=True)
    if left:
        raise OrchestrateError(f"{len(left)} of {total} tasks did not complete")
    if code == 0:
        typer.echo(f"all {total} tasks completed" if total else "no tasks to run")
    raise typer.Exit(code)


SHOWN = 20  # tasks `run` names at the end; `orchestrate tasks` has the rest


def pause(ctx: typer.Context) -> None:
    """Hold the queue: the head claims nothing more (running tasks finish) until `orchestrate resume`,
    across restarts."""
    with session(ctx).queue() as conn:
        was, running = api.pause(conn), api.counts(conn)["running"]
    if was is not None:
        typer.echo(f"the queue is already paused, {render.paused_line(was)}")
        return
    finishing = f"; {running} running task(s) finish" if running else ""
    typer.echo(f"paused: the head claims nothing new{finishing}; `orchestrate resume` goes on")


def resume(ctx: typer.Context) -> None:
    """Let the head claim tasks again after `orchestrate pause`."""
    with session(ctx).queue() as conn:
        was = api.resume(conn)
    if was is None:
        typer.echo("the queue was not paused")
        return
    typer.echo(f"resumed after {render.duration(time.time() - was)} paused: the head claims tasks again")


def stop(ctx: typer.Context, wait: bool = typer.Option(False, "--wait", help="Let running tasks finish.")) -> None:
    """Stop the head: running tasks go back to the queue, or with --wait finish first."""
    from orchestrate.cli import lifecycle

    def waiting(limit: float) -> None:
        if wait:
            typer.echo(f"stopping once the running tasks finish (giving up after {render.duration(limit)})...")

    pid = lifecycle.stop(session(ctx).config, wait, waiting)
    typer.echo(f"head {pid} stopped")
