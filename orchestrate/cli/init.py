"""`orchestrate init`: a new project's config and context skeleton."""

# No `from __future__ import annotations`: typer reads the annotations (see cli/app.py).
from pathlib import Path

import typer

from orchestrate.core.errors import OrchestrateError

TEMPLATES = Path(__file__).parent.parent / "templates"
FILES = (
    ("config.yaml", Path("config.yaml")),
    ("project_overview.md", Path("context/project_overview.md")),
    ("current_state.md", Path("context/current_state.md")),
)
FOLDERS = (Path("context"), Path("context/agent_outputs"))


def init() -> None:
    """Write a commented config.yaml and a context/ skeleton; never overwrites a file."""
    for folder in FOLDERS:
        if folder.exists() and not folder.is_dir():
            raise OrchestrateError(
                f"{folder} is a file, and init puts the project's context in a directory of that name:"
                " rename or move it, then run init again"
            )
    try:
        _write()
    except OSError as exc:
        where = exc.filename or "the project's files"
        raise OrchestrateError(
            f"cannot write {where}: {exc.strerror}; run init in a directory you can write to"
        ) from None
    typer.echo('next: orchestrate add "your first task"  then  orchestrate start')


def _write() -> None:
    for name, target in FILES:
        if target.exists():
            typer.echo(f"kept     {target} (already there)")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text((TEMPLATES / name).read_text(encoding="utf-8"), encoding="utf-8")
        typer.echo(f"wrote    {target}")
    FOLDERS[-1].mkdir(parents=True, exist_ok=True)
