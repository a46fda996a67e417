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
# Orchestrate's own files, never the project's: the default queue with its -wal and -shm, and the runtime dir.
IGNORED = ("tasks.db*", ".orchestrate/")
IGNORE_NOTE = "# orchestrate's queue and runtime files"


def init() -> None:
    """Write a commented config.yaml and a context/ skeleton, never overwriting a file; in a git
    work tree, list orchestrate's own files in .gitignore."""
    for folder in FOLDERS:
        if folder.exists() and not folder.is_dir():
            raise OrchestrateError(
                f"{folder} is a file, and init puts the project's context in a directory of that name:"
                " rename or move it, then run init again"
            )
    try:
        _write()
        _ignore()
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


def _ignore() -> None:
    """Add the lines of IGNORED that .gitignore lacks, after what is there; only in a git work tree."""
    from orchestrate.workspace.git import run_sync as git

    if git(Path.cwd(), "rev-parse", "--is-inside-work-tree").out.strip() != "true":
        return
    path = Path(".gitignore")
    text = path.read_bytes() if path.exists() else b""
    present = {line.strip().strip("/") for line in text.decode("utf-8", "replace").splitlines()}
    missing = [pattern for pattern in IGNORED if pattern.strip("/") not in present]
    if not missing:
        typer.echo(f"kept     {path} (already ignores {', '.join(IGNORED)})")
        return
    lines = ([] if IGNORE_NOTE in present else [IGNORE_NOTE]) + missing
    lead = b"\n" if text and not text.endswith(b"\n") else b""  # the last line stays a line of its own
    with path.open("ab") as out:
        out.write(lead + "".join(f"{line}\n" for line in lines).encode())
    typer.echo(f"{'updated' if text else 'wrote':<8} {path} (ignores {', '.join(missing)})")
