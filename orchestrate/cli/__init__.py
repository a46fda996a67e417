"""The `orchestrate` command: each command parses, loads the config, calls the library, prints."""

# No `from __future__ import annotations` here: typer reads these annotations on every run, and
# real objects spare it evaluating strings (a few ms of the start-up budget).
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from orchestrate import api, configfile
from orchestrate.cli import render
from orchestrate.core import store
from orchestrate.core.config import Config
from orchestrate.core.errors import OrchestrateError, UsageError

try:  # typer >= 0.24 vendors click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException  # type: ignore[no-redef,import-not-found]


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """The error boundary: our errors and usage errors become one line on stderr."""
    try:
        yield
    except OrchestrateError as exc:
        typer.echo(f"orchestrate: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except ClickException as exc:
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx else "orchestrate"
        typer.echo(f"{where}: {exc.format_message()} (see --help)", err=True)
        raise typer.Exit(2) from None


class _Commands(TyperGroup):
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        with _one_line_errors():
            return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        with _one_line_errors():
            return super().invoke(ctx)


app = typer.Typer(
    cls=_Commands,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Run a backlog of coding tasks through coding-agent CLIs in parallel.",
)


class Session:
    """What every command shares: the global options, and the config loaded once on demand."""

    def __init__(self, config_path: Path | None, db: Path | None) -> None:
        self.explicit = config_path is not None
        self.config_path = config_path or Path("config.yaml")
        self.db = db

    @cached_property
    def config(self) -> Config:
        loaded = configfile.load(self.config_path, required=self.explicit)
        return loaded.with_database(self.db) if self.db else loaded

    def queue(self, *, create: bool = True) -> Any:
        return api.opened(self.config.task_queue.database, create=create)


def _session(ctx: typer.Context) -> Session:
    return ctx.ensure_object(Session) if ctx.obj else Session(None, None)


def _echo_json(data: Any) -> None:
    import json  # imported where used, to keep the common commands fast

    typer.echo(json.dumps(data, indent=2))


@app.callback()
def _options(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", envvar="ORCHESTRATE_CONFIG", help="Configuration file (default: ./config.yaml)."
    ),
    db: Path | None = typer.Option(None, "--db", help="Queue file, overriding the configuration's."),
) -> None:
    ctx.obj = Session(config, db)


TEMPLATES = Path(__file__).parent.parent / "templates"


@app.command()
def init() -> None:
    """Write a commented config.yaml and a context/ skeleton; never overwrites a file."""
    for name, target in (
        ("config.yaml", Path("config.yaml")),
        ("project_overview.md", Path("context/project_overview.md")),
        ("current_state.md", Path("context/current_state.md")),
    ):
        if target.exists():
            typer.echo(f"kept     {target} (already there)")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text((TEMPLATES / name).read_text(encoding="utf-8"), encoding="utf-8")
        typer.echo(f"wrote    {target}")
    Path("context/agent_outputs").mkdir(parents=True, exist_ok=True)
    typer.echo('next: orchestrate add "your first task"  then  orchestrate start')


@app.command()
def add(
    ctx: typer.Context,
    description: str | None = typer.Argument(None, help="What the agent should do."),
    priority: str = typer.Option("normal", "--priority", "-p", help="high, normal or low."),
    agent: str | None = typer.Option(None, "--agent", help="Preferred agent (entry name or type)."),
    after: list[str] = typer.Option([], "--after", help="Task(s) that must complete first."),
    timeout: float | None = typer.Option(None, "--timeout", help="Minutes before the agent is stopped."),
    context: list[Path] = typer.Option([], "--context", help="A file to give the agent; repeatable."),
    max_retries: int | None = typer.Option(None, "--max-retries", min=0, help="Retries after the first attempt."),
    file: Path | None = typer.Option(None, "--file", "-f", help="A YAML file of tasks to queue at once."),
    workspace: str | None = typer.Option(None, "--workspace", help="shared or worktree (default: the config's)."),
    verify: list[str] | None = typer.Option(
        None, "--verify", help="A shell command that must pass for the task to complete; repeatable."
    ),
) -> None:
    """Queue a task (or a file of tasks) and print its id."""
    from orchestrate.cli import taskfile  # only `add` parses task input

    session = _session(ctx)
    cfg = session.config
    retries = cfg.task_queue.max_retries if max_retries is None else max_retries
    if (description is None) == (file is None):
        raise UsageError("give a task description or --file tasks.yaml (one of them)")
    if file is not None:
        batch = taskfile.load(file, cfg.root, retries)
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
            )
        ]
    if any(new.workspace == "worktree" for new in batch) and cfg.workspace.mode != "worktree":
        from orchestrate.workspace import branches

        branches.require_repository(cfg.root)
    with session.queue() as conn:
        ids = api.add_tasks(conn, batch)
    known = cfg.agent_names()
    for task_id, new in zip(ids, batch, strict=True):
        typer.echo(store.task_name(task_id))
        if new.agent_type and new.agent_type not in known:
            typer.echo(
                f"note: no agent {new.agent_type!r} is configured, so any agent may take {store.task_name(task_id)}",
                err=True,
            )


@app.command()
def status(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """The head node, the counts by status, busy agents and recent failures."""
    with _session(ctx).queue(create=False) as conn:
        head, counts = api.head(conn), api.counts(conn)
        slots = api.slots(conn) if head.running else []
        failures = api.recent_failures(conn)
    trees = api.worktree_usage(_session(ctx).config)
    if as_json:
        _echo_json(render.status_json(head, counts, slots, trees))
        return
    typer.echo(f"head     {render.head_line(head)}")
    typer.echo(f"queue    {render.counts_line(counts)}")
    busy = [s for s in slots if s.state == "busy"]
    if slots:
        typer.echo(f"agents   {len(busy)} of {len(slots)} busy")
    if busy:
        typer.echo(render.slots_table(busy))
    for slot in slots:
        if slot.state in ("cooling", "unavailable"):
            typer.echo(f"{slot.state:<8} {slot.id}: {slot.note}")
    for task in failures:
        typer.echo(f"failed   {task.name}  {render.shorten(task.error or 'no error recorded', 60)}")
    if trees[0]:
        from orchestrate.workspace.branches import size

        typer.echo(f"worktrees {trees[0]} in {_session(ctx).config.runtime_dir / 'worktrees'}, {size(trees[1])}")


STATUS_FILTERS = tuple(api.LIST_FILTERS)


@app.command()
def tasks(
    ctx: typer.Context,
    status: str = typer.Option("all", "--status", "-s", help=f"One of: {', '.join(STATUS_FILTERS)}."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The tasks, oldest first; `--status active` means running."""
    if status not in api.LIST_FILTERS:
        raise UsageError(f"--status must be one of {', '.join(STATUS_FILTERS)}, not {status!r}")
    session = _session(ctx)
    with session.queue(create=False) as conn:
        found, head = api.list_tasks(conn, status), api.head(conn)
    if as_json:
        _echo_json([render.task_json(t) for t in found])
        return
    if found:
        typer.echo(render.tasks_table(found))
    else:
        typer.echo("no tasks" + ("" if status == "all" else f" with status {status}"))
    if not head.running:
        typer.echo("(the head node is not running: `orchestrate start` works the queue)", err=True)


@app.command()
def agents(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """Each agent slot: state, current task, pid, memory, tasks done, cost."""
    with _session(ctx).queue(create=False) as conn:
        head = api.head(conn)
        slots = api.slots(conn) if head.running else []
    if as_json:
        _echo_json([render.slot_json(s) for s in slots])
    elif slots:
        typer.echo(render.slots_table(slots))
    else:
        typer.echo("no agents: the head node is not running (`orchestrate start` starts it)")


def _task(ctx: typer.Context, task: str) -> store.Task:
    with _session(ctx).queue(create=False) as conn:
        return api.get_task(conn, api.parse_task_id(task))


@app.command()
def show(ctx: typer.Context, task: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """One task in full: attempts, error, output and log files, cost."""
    found = _task(ctx, task)
    if as_json:
        _echo_json(render.task_json(found))
        return
    typer.echo(render.show_task(found))
    cfg = _session(ctx).config
    if (found.workspace or cfg.workspace.mode) == "worktree":
        from orchestrate.workspace import branches

        for line in branches.branch_lines(cfg, found):
            typer.echo(line)


@app.command()
def logs(ctx: typer.Context, task: str, follow: bool = typer.Option(False, "--follow", "-f")) -> None:
    """Print what the task's agent printed; `-f` follows it while the task runs."""
    session = _session(ctx)
    found = _task(ctx, task)
    path = api.log_path(session.config, found)
    if not path.exists() and not (follow and found.status in ("pending", "running")):
        raise OrchestrateError(f"{found.name} has no log yet ({path} does not exist): it has not run")
    offset = 0
    while True:
        if path.exists():
            with path.open("rb") as log:
                log.seek(offset)
                chunk = log.read()
            offset += len(chunk)
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
        if not follow:
            return
        finished = _task(ctx, task).status not in ("pending", "running")
        if finished and (not path.exists() or path.stat().st_size == offset):
            return
        time.sleep(0.2)  # following a file: poll it, as tail -f does


@app.command()
def retry(ctx: typer.Context, task: str) -> None:
    """Put a failed or cancelled task back in the queue with a fresh retry budget."""
    with _session(ctx).queue() as conn:
        before = api.retry(conn, api.parse_task_id(task))
    typer.echo(f"{before.name} is pending again (was {before.status}; retry budget reset)")


@app.command()
def cancel(ctx: typer.Context, task: str) -> None:
    """Stop a pending or running task for good."""
    with _session(ctx).queue() as conn:
        before = api.cancel(conn, api.parse_task_id(task))
        waiting = api.waiting_on(conn, before.id)
    note = " (the head stops its agent)" if before.status == "running" else ""
    typer.echo(f"{before.name} cancelled{note}")
    if waiting:
        names = ", ".join(store.task_name(t) for t in waiting)
        typer.echo(f"note: {names} wait(s) for it and stay blocked until it is retried", err=True)


@app.command()
def merge(ctx: typer.Context, task: str) -> None:
    """Merge a completed task's branch into the current branch (fast-forward when possible)."""
    from orchestrate.workspace import branches

    for line in branches.merge(_session(ctx).config, _task(ctx, task)):
        typer.echo(line)


@app.command()
def clean(ctx: typer.Context) -> None:
    """Remove worktrees of cancelled tasks, and worktrees and branches of merged completed tasks."""
    from orchestrate.workspace import branches

    session = _session(ctx)
    with session.queue(create=False) as conn:

        def lookup(task_id: int) -> store.Task | None:
            try:
                return api.get_task(conn, task_id)
            except OrchestrateError:
                return None  # a worktree left from a queue that was deleted: not ours to judge

        for line in branches.clean(session.config, lookup):
            typer.echo(line)


AGENTS_HELP = "Agent slots for this run, overriding the configuration, e.g. claude:2,codex:2."


def _head_config(ctx: typer.Context, agents: str | None) -> Config:
    session = _session(ctx)
    with session.queue():  # a queue file that is not one is exit 2 here, before any head starts
        pass
    if session.config.workspace.mode == "worktree":
        from orchestrate.workspace import branches

        branches.require_repository(session.config.root)
    return configfile.with_slots(session.config, agents) if agents else session.config


@app.command()
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
    session = _session(ctx)
    argv = lifecycle.child_argv(session.config_path if session.explicit else None, session.db, agents)
    pid, log = lifecycle.start_background(cfg, argv)
    typer.echo(f"head running, pid {pid}; log: {log}")


def _serve(cfg: Config, until_idle: bool = False) -> int:
    """Run a head in this process with the built-in features this configuration turns on."""
    from orchestrate import builtin
    from orchestrate.core import head

    return head.serve(cfg, builtin.extensions(cfg), builtin.adapters(cfg), until_idle=until_idle)


@app.command()
def run(ctx: typer.Context, agents: str | None = typer.Option(None, "--agents", help=AGENTS_HELP)) -> None:
    """Work the queue in the foreground until nothing is left: exit 0 if all completed, 1 if any failed."""
    raise typer.Exit(_serve(_head_config(ctx, agents), until_idle=True))


@app.command()
def stop(ctx: typer.Context, wait: bool = typer.Option(False, "--wait", help="Let running tasks finish.")) -> None:
    """Stop the head: running tasks go back to the queue, or with --wait finish first."""
    from orchestrate.cli import lifecycle

    if wait:
        typer.echo("stopping once the running tasks finish...")
    pid = lifecycle.stop(_session(ctx).config, wait)
    typer.echo(f"head {pid} stopped")


@app.command()
def dashboard(
    ctx: typer.Context,
    port: int | None = typer.Option(
        None, "--port", min=0, max=65535, help="Default: the config's dashboard.port, else 8765; 0 picks a free one."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; any but loopback needs a token."),
    token: str | None = typer.Option(
        None, "--token", envvar="ORCHESTRATE_DASHBOARD_TOKEN", help="Required of every request (default: the config's)."
    ),
) -> None:
    """Serve the live web dashboard until Ctrl-C."""
    from orchestrate.dashboard import server as web  # the server and its JSON stay off the other commands' start-up

    session = _session(ctx)
    with session.queue(create=False):  # a file that is not a queue is exit 2 here, not an error on every request
        pass
    cfg = session.config
    port = (cfg.dashboard.port or web.DEFAULT_PORT) if port is None else port
    server = web.open_server(cfg, host, port, token or cfg.dashboard.token)
    typer.echo(f"dashboard on {server.url} (Ctrl-C stops it)")
    web.serve_until_stopped(server)


def main() -> None:
    """Console entry point."""
    app(prog_name="orchestrate")
