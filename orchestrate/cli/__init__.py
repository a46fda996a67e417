"""The `orchestrate` command: a package of small commands, each parsing its arguments, loading the
config, calling the library and printing."""

from __future__ import annotations

from orchestrate.cli import dashboard, head, init, tasks, workspace
from orchestrate.cli.app import Session, app, session

__all__ = ["Session", "app", "main", "session"]

# Registered here, in one list, because `--help` lists the commands in the order they were added.
for command in (
    init.init,
    tasks.add,
    head.status,
    tasks.tasks,
    head.agents,
    tasks.show,
    tasks.logs,
    tasks.retry,
    tasks.cancel,
    workspace.merge,
    workspace.clean,
    head.start,
    head.run,
    head.stop,
    head.pause,
    head.resume,
    dashboard.dashboard,
):
    app.command()(command)


def main() -> None:
    """Console entry point."""
    app(prog_name="orchestrate")
