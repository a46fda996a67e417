"""The typer app the commands register on (new_app): its global options, the one error boundary,
and the Session every command shares."""

# No `from __future__ import annotations` in the CLI: typer reads the commands' annotations on
# every run, and real objects spare it evaluating strings (a few ms of the start-up budget).
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from orchestrate import api, configfile
from orchestrate.core import store
from orchestrate.core.config import Config
from orchestrate.core.errors import OrchestrateError

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
        typer.echo(_one_line(f"orchestrate: {exc}"), err=True)
        raise typer.Exit(exc.exit_code) from None
    except ClickException as exc:
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx else "orchestrate"
        typer.echo(_one_line(f"{where}: {exc.format_message()} (see --help)"), err=True)
        raise typer.Exit(2) from None


def _one_line(message: str) -> str:
    """An error as one line a terminal shows as it is: what the user or an agent typed may hold
    newlines or escape sequences."""
    from orchestrate.cli.render import visible

    return visible(message.replace("\n", "\\n"))


class _Commands(TyperGroup):
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        with _one_line_errors():
            return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        with _one_line_errors():
            return super().invoke(ctx)


JSON_HELP = "Print JSON instead (the shapes are in docs/design.md)."


class Session:
    """What every command shares: the global options, and the config loaded once on demand."""

    def __init__(self, config_path: Path | None, db: Path | None, explicit: bool | None = None) -> None:
        self.explicit = config_path is not None if explicit is None else explicit  # must exist
        self.config_path = config_path or Path("config.yaml")
        self.db = db

    @cached_property
    def config(self) -> Config:
        loaded = configfile.load(self.config_path, required=self.explicit)
        return loaded._replace(task_queue=loaded.task_queue._replace(database=self.db)) if self.db else loaded

    def queue(self, *, create: bool = True) -> Any:
        return api.queue_of(self.config, create=create)

    def task(self, ref: str) -> store.Task:
        """The task `ref` names (task_001, task_1 or 1), read afresh."""
        with self.queue(create=False) as conn:
            return api.get_task(conn, api.parse_task_id(ref))


def session(ctx: typer.Context) -> Session:
    """The invocation's Session (a bare one when a command is called without the app's callback)."""
    return ctx.ensure_object(Session) if ctx.obj else Session(None, None)


def echo_json(data: Any) -> None:
    """Print `data` as indented JSON."""
    import json  # imported where used, to keep the common commands fast

    typer.echo(json.dumps(data, indent=2))


def _version(shown: bool) -> None:
    if shown:
        from orchestrate import __version__

        typer.echo(f"orchestrate {__version__}")
        raise typer.Exit()


def new_app() -> typer.Typer:
    """The app with its global options and no commands yet."""
    made = typer.Typer(
        cls=_Commands,
        context_settings={"help_option_names": ["-h", "--help"]},
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        help="Run a backlog of coding tasks through coding-agent CLIs in parallel.",
    )
    made.callback()(_options)
    return made


def _options(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", envvar="ORCHESTRATE_CONFIG", help="Configuration file (default: ./config.yaml)."
    ),
    db: Path | None = typer.Option(
        None, "--db", envvar="ORCHESTRATE_DB", help="Queue file, overriding the configuration's."
    ),
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_version, help="Print the version and exit."
    ),
) -> None:
    # From the environment (as the head gives its agents), a missing file is the defaults for its
    # directory, as a missing ./config.yaml is for this one; named with --config, it must exist.
    from_environment = getattr(ctx.get_parameter_source("config"), "name", "") == "ENVIRONMENT"
    ctx.obj = Session(config, db, explicit=config is not None and not from_environment)
