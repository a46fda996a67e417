"""`orchestrate init`: a new project's config and context skeleton."""

# No `from __future__ import annotations`: typer reads the annotations (see cli/app.py).
from pathlib import Path

import typer

TEMPLATES = Path(__file__).parent.parent / "templates"


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
