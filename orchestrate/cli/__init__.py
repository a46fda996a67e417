"""The `orchestrate` command: a package of small commands, each parsing its arguments, loading the
config, calling the library and printing."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from importlib import import_module

import typer

from orchestrate.cli.app import Session, new_app, session

__all__ = ["Session", "app", "main", "session"]

# Importing cli/app.py bound its name here. `app` is the whole app instead, built when first asked
# for (see __getattr__): a run builds and imports only the command it runs.
del globals()["app"]

# Each command and its module, in the order `--help` lists them.
COMMANDS = {
    "init": "init",
    "add": "tasks",
    "status": "head",
    "tasks": "tasks",
    "agents": "head",
    "show": "tasks",
    "logs": "tasks",
    "retry": "tasks",
    "cancel": "tasks",
    "merge": "workspace",
    "clean": "workspace",
    "start": "head",
    "run": "head",
    "stop": "head",
    "pause": "head",
    "resume": "head",
    "dashboard": "dashboard",
}
GLOBAL_VALUES = ("--config", "--db")  # the app's options that take a value
COMPLETE_VAR = "_ORCHESTRATE_COMPLETE"  # click's shell completion, which completes every command's name


def with_commands(names: Iterable[str]) -> typer.Typer:
    """The app with its global options and these commands."""
    made = new_app()
    for name in names:
        made.command()(getattr(import_module(f"orchestrate.cli.{COMMANDS[name]}"), name))
    return made


def __getattr__(name: str) -> typer.Typer:
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    whole = globals()["app"] = with_commands(COMMANDS)
    return whole


def invoked(args: Sequence[str]) -> str:
    """The command `args` name after the global options; "" unless only --config and --db come
    before it, since --help, --version, a bad option or no command need the whole app."""
    rest = iter(args)
    for arg in rest:
        if arg in GLOBAL_VALUES:
            if next(rest, "-").startswith("-"):  # no value, or one for click to judge
                return ""
        elif arg.partition("=")[0] not in GLOBAL_VALUES:
            return "" if arg.startswith("-") else arg
    return ""


def main() -> None:
    """Console entry point."""
    # typer turns every command's signature into click parameters on each run, a few ms of the
    # start-up budget: only the command asked for is imported and built, when no other can show.
    name = invoked(sys.argv[1:])
    alone = name in COMMANDS and COMPLETE_VAR not in os.environ
    with_commands([name] if alone else COMMANDS)(prog_name="orchestrate")
