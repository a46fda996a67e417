"""The commands on task branches and worktrees: merge and clean."""

# No `from __future__ import annotations`: typer reads the annotations (see cli/app.py).
import typer

from orchestrate import api
from orchestrate.cli.app import session
from orchestrate.core import store
from orchestrate.core.errors import OrchestrateError


def merge(ctx: typer.Context, task: str) -> None:
    """Merge a completed task's branch into the current branch (fast-forward when possible)."""
    from orchestrate.workspace import branches

    cfg = session(ctx).config
    for line in branches.merge(cfg, session(ctx).task(task)):
        typer.echo(line)
    branches.measure(cfg)  # its worktree may be gone: `status` reads the size measured here


def clean(ctx: typer.Context) -> None:
    """Remove worktrees of cancelled tasks, and worktrees and branches of merged completed tasks."""
    from orchestrate.workspace import branches

    cfg = session(ctx).config
    with session(ctx).queue(create=False) as conn:

        def lookup(task_id: int) -> store.Task | None:
            try:
                return api.get_task(conn, task_id)
            except OrchestrateError:
                return None  # a worktree left from a queue that was deleted: not ours to judge

        for line in branches.clean(cfg, lookup):
            typer.echo(line)
    branches.measure(cfg)  # `status` never walks the worktrees: it reads the size measured here
